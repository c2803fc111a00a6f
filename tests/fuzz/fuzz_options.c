/* SPDX-License-Identifier: MIT */
/* fuzz_options.c: config file text, command lines and timespans from arbitrary bytes. */
#include "core/options.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cc_options o;
    char *err = NULL;

    /* the bytes as a config file */
    cc_options_defaults(&o);
    if (cc_options_parse_config(&o, (const char *)data, size, "fuzz.conf", &err) != CC_OPT_OK)
        free(err);
    char *lua = cc_options_to_lua(&o);
    free(lua);
    cc_options_release(&o);

    /* the bytes as a command line: NUL-separated arguments */
    char *copy = malloc(size + 1);
    memcpy(copy, data, size);
    copy[size] = '\0';
    char *argv[64] = {"cicada"};
    int argc = 1;
    for (char *p = copy; argc < 63 && p < copy + size; p += strlen(p) + 1)
        argv[argc++] = p;
    argv[argc] = NULL;
    char *envp[] = {NULL};
    cc_options_defaults(&o);
    err = NULL;
    if (cc_options_load(&o, argc, argv, envp, NULL, NULL, &err) != CC_OPT_OK) free(err);
    cc_options_release(&o);

    /* and as a timespan */
    cc_parse_timespan(copy);
    free(copy);
    return 0;
}
