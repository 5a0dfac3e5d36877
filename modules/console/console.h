/* The console module: the web console (/app/) and the JavaScript SDK
 * (/sdk/trellis.js) served to browsers from the build's output
 * (console_dir, built by modules/console/build.mjs). */
#ifndef TR_CONSOLE_H
#define TR_CONSOLE_H

#include "module.h"

void console_app_root(struct tr_ctx *c);
void console_app_index(struct tr_ctx *c);
void console_app_file(struct tr_ctx *c);
void console_sdk_file(struct tr_ctx *c);

#endif
