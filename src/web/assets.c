/* SPDX-License-Identifier: MIT */
/* assets.c: finding the embedded front-end files; the bytes are in the generated web_assets.c. */
#include "web/assets.h"

#include <string.h>

const struct cc_asset *cc_asset_find(const char *path)
{
    for (size_t i = 0; i < cc_nassets; i++)
        if (strcmp(cc_assets[i].path, path) == 0) return &cc_assets[i];
    return NULL;
}

const char *cc_asset_type(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},   {".svg", "image/svg+xml"},
        {".json", "application/json"},         {".png", "image/png"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < CC_ARRAY_LEN(types); i++)
        if (strcmp(dot, types[i].ext) == 0) return types[i].type;
    return "application/octet-stream";
}
