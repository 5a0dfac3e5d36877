/* The console module's surface: files for browsers, not API endpoints
 * (TR_STATIC keeps them out of the OpenAPI document). */
#include "console.h"

#include "config.h"

#define STATIC_ROUTE (TR_PUBLIC | TR_INLINE | TR_STATIC)

static const struct tr_route routes[] = {
    {TR_GET, "/app", console_app_root, NULL, STATIC_ROUTE, "The web console: moved to /app/.", NULL,
     NULL, NULL},
    {TR_GET, "/app/", console_app_index, NULL, STATIC_ROUTE, "The web console.", NULL, NULL, NULL},
    {TR_GET, "/app/{file}", console_app_file, NULL, STATIC_ROUTE,
     "The web console's scripts, styles and images.", NULL, NULL, NULL},
    {TR_GET, "/sdk/{file}", console_sdk_file, NULL, STATIC_ROUTE,
     "The JavaScript SDK as one ES module (trellis.js) and its source map.", NULL, NULL, NULL},
};

static const struct tr_config_key config[] = {
    {"console_dir", TR_CONFIG_STR, "build/console", 0, 0,
     "Where the console's build output is (app/ and sdk/, made by `make build`), relative to "
     "the working directory; /app/ and /sdk/trellis.js answer 404 when it is missing."},
};

const struct tr_module tr_console_module = {
    .name = "console",
    .routes = routes,
    .nroutes = sizeof(routes) / sizeof(routes[0]),
    .config = config,
    .nconfig = sizeof(config) / sizeof(config[0]),
};
