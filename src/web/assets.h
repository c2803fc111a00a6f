/* SPDX-License-Identifier: MIT */
/*
 * assets.h: the web UI's front end (web/) and Debian's Chart.js, embedded in the binary at
 * build time by cmake/embed.cmake. Nothing is read from disk or fetched at run time.
 */
#ifndef CC_ASSETS_H
#define CC_ASSETS_H

#include "core/common.h"

struct cc_asset {
    const char *path;          /* "/index.html", "/chart.js"... */
    const unsigned char *data; /* |size| bytes, then a NUL that |size| does not count */
    size_t size;
};

/* Generated: every asset, in the order CMake listed them. */
extern const struct cc_asset cc_assets[];
extern const size_t cc_nassets;

/* The asset at |path| ("/app.js"), or NULL. */
const struct cc_asset *cc_asset_find(const char *path);
/* The Content-Type for |path|, from its extension. */
const char *cc_asset_type(const char *path);

#endif
