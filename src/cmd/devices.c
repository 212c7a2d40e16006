// `clvae devices`: lists what clrt_list_devices finds.
#include "devices.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cl_runtime.h"

int devices_main(int argc, char **argv, struct clvae_error *err)
{
    bool help = false; // --help anywhere, as every other command takes it
    for (int i = 1; i < argc; i++)
        help = help || !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
    if (help) {
        printf("usage: clvae devices [--verbose]\n\nLists every OpenCL platform and device with "
               "the indices that --platform and --device take; --verbose adds each\n"
               "device's version, driver and limits and what clvae will use there.\n");
        return 0;
    }
    bool verbose = argc == 2 && (!strcmp(argv[1], "--verbose") || !strcmp(argv[1], "-v"));
    if (argc > 2 || (argc == 2 && !verbose))
        return clvae_fail(err, CLVAE_EXIT_USAGE, "devices: unexpected argument '%s'",
                          argv[argc - 1]);
    return clrt_list_devices(stdout, verbose, err);
}
