/* SPDX-License-Identifier: MIT */
/*
 * chunk.h: what an OpenAI-style response says, read from its JSON without building it: a chat
 * or completion chunk of a stream (or a whole response), or an embeddings response. A single
 * pass over the bytes validates the JSON and picks out:
 *
 *   choices[*].delta.content, .delta.reasoning_content, .delta.reasoning  (chat chunks)
 *   choices[*].message.content, .message.reasoning_content              (chat responses)
 *   choices[*].text                                                     (completions)
 *   choices[*].finish_reason
 *   usage.completion_tokens, usage.prompt_tokens
 *   data[*]                                                             (embeddings)
 *   error.message, or a top-level "message" of an object whose "object" is "error"
 *
 * Nothing is allocated except what goes into the caller's text buffer.
 */
#ifndef CC_OAI_CHUNK_H
#define CC_OAI_CHUNK_H

#include "core/common.h"
#include "core/strbuf.h"

#define CC_OAI_MAX_DEPTH 64

struct cc_oai_chunk {
    bool content; /* some choice carried output: non-empty content, reasoning or text */
    int64_t completion_tokens; /* usage; -1 when absent */
    int64_t prompt_tokens;
    uint32_t embeddings; /* objects in a top-level "data" array */
    bool is_error;       /* an "error" member (not null), or "object": "error" */
    char error[256];     /* its message, cut to fit */
    char finish_reason[32];
};

/*
 * Reads one JSON document of |len| bytes into |c|. Content text (not reasoning) is appended,
 * unescaped, to |text| when it is not NULL. Returns 0, or CC_EPROTO when the bytes are not one
 * JSON value (or nest deeper than CC_OAI_MAX_DEPTH); |c| then holds what was read before.
 */
int cc_oai_scan(const char *json, size_t len, struct cc_oai_chunk *c, struct cc_strbuf *text);

#endif
