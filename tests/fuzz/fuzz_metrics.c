// libFuzzer harness for plot_read_metrics, the metrics.csv reader of clvae plot and train's
// curves.png, and for the drawing that follows it (plot_curves_rows, in memory: axes over any
// range the file holds, such as epochs 1e16 and 1e16 + 2, where a tick loop once never ended).
// Every return is fine: only crashes, leaks, sanitizer reports and timeouts are findings.
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_file.h"
#include "plot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file("metrics.csv", data, size);
    double *rows = NULL;
    int n = 0;
    struct clvae_error err;
    int rc = plot_read_metrics(path, false, &rows, &n, &err);
    fuzz_report("plot_read_metrics", rc, &err);
    if (rc == 0) {
        fuzz_touch(rows, (size_t)n * PLOT_METRICS_COLUMNS * sizeof *rows);
        fuzz_report("plot_curves_rows", plot_curves_rows(rows, n, NULL, &err), &err);
        free(rows);
    }
    return 0;
}
