#include "plot.h"

#include <cairo.h>
#include <errno.h>
#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h"
#include "regular_file.h"

#define FONT "DejaVu Sans"
#define PI 3.14159265358979323846
#define MAX_EPOCHS 100000

const double plot_train_colour[3] = {0.0, 0x72 / 255.0, 0xB2 / 255.0};
const double plot_test_colour[3] = {0xD5 / 255.0, 0x5E / 255.0, 0.0};

void plot_class_colour(int c, int n, double rgb[3])
{
    static const unsigned tableau10[10] = {0x4E79A7, 0xF28E2B, 0xE15759, 0x76B7B2, 0x59A14F,
                                           0xEDC948, 0xB07AA1, 0xFF9DA7, 0x9C755F, 0xBAB0AC};
    if (n <= 10) {
        unsigned v = tableau10[c % 10];
        rgb[0] = (v >> 16) / 255.0, rgb[1] = (v >> 8 & 0xff) / 255.0, rgb[2] = (v & 0xff) / 255.0;
        return;
    }
    // HSV with s 0.65, v 0.85 at hue c / n.
    double h = 6.0 * c / n, f = h - floor(h), v = 0.85, p = v * 0.35, q = v * (1 - 0.65 * f),
           t = v * (1 - 0.65 * (1 - f));
    double table[6][3] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
    memcpy(rgb, table[(int)h % 6], sizeof table[0]);
}

// ---- PNG output --------------------------------------------------------------------------------

static cairo_status_t write_stream(void *closure, const unsigned char *data, unsigned int len)
{
    return fwrite(data, 1, len, closure) == len ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

// surface -> path as a PNG, whole or not at all.
static int write_png(cairo_surface_t *surface, const char *path, struct clvae_error *err)
{
    struct atomic_file out;
    if (atomic_file_open(&out, path, err))
        return -1;
    errno = 0;
    if (cairo_surface_write_to_png_stream(surface, write_stream, out.fp) != CAIRO_STATUS_SUCCESS) {
        int saved = errno ? errno : EIO;
        atomic_file_abort(&out);
        return clvae_fail(err, CLVAE_EXIT_OUTPUT, "%s: %s", path, strerror(saved));
    }
    return atomic_file_commit(&out, err);
}

// A white surface of w x h and its context, text in FONT at size.
static cairo_t *canvas(int w, int h, double size, cairo_surface_t **surface)
{
    *surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    cairo_t *cr = cairo_create(*surface);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
    return cr;
}

// text with its anchor at (x, y): ax, ay in {0, 0.5, 1} of its width and height; rotated a
// quarter turn anticlockwise when vertical.
static void text_at(cairo_t *cr, const char *text, double x, double y, double ax, double ay,
                    bool vertical)
{
    cairo_text_extents_t e;
    cairo_text_extents(cr, text, &e);
    cairo_save(cr);
    cairo_translate(cr, x, y);
    if (vertical)
        cairo_rotate(cr, -PI / 2);
    cairo_move_to(cr, -ax * e.x_advance, ay * e.height);
    cairo_show_text(cr, text);
    cairo_restore(cr);
}

// ---- axes --------------------------------------------------------------------------------------

// An axis from lo to hi on the page from p0 to p1: ticks at (first + i) step for i < ticks.
struct axis {
    double lo, hi, p0, p1, step, first;
    int ticks;
};

#define MAX_TICKS 64 // nice_range makes about five; this bounds any loop over them

// v's place on the page; in halves, so that an axis from -DBL_MAX to DBL_MAX does not overflow.
static double to_page(const struct axis *a, double v)
{
    return a->p0 + (v * 0.5 - a->lo * 0.5) / (a->hi * 0.5 - a->lo * 0.5) * (a->p1 - a->p0);
}

// lo..hi (finite) widened to multiples of a round step (1, 2 or 5 times a power of ten) giving
// about five ticks; a single value is widened around itself. integer: steps of at least 1. The
// step is at least two spacings of the doubles there, so that the ticks are values of their own
// (between epochs 1e16 and 1e16 + 2 there is no double: a step of 0.5 never moved on from 1e16),
// and they are counted, never stepped through. A tick past the largest double is left out.
static void nice_range(double lo, double hi, bool integer, struct axis *a)
{
    if (!(hi > lo)) {
        double pad = fabs(lo) > 0 ? fabs(lo) * 0.05 : 1.0;
        lo = fmax(lo - pad, -DBL_MAX), hi = fmin(hi + pad, DBL_MAX);
    }
    double big = fmax(fabs(lo), fabs(hi)), spacing = 2 * (big - nextafter(big, 0));
    double raw = fmax(hi / 5.0 - lo / 5.0, spacing), mag = pow(10.0, floor(log10(raw)));
    mag = mag > 0 ? mag : DBL_TRUE_MIN; // 10^-324 is no double
    double f = raw / mag, step = (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
    if (integer && step < 1)
        step = 1;
    // Below 2^53 in magnitude (step is at least two spacings): whole numbers, exactly.
    double first = floor(lo / step), last = ceil(hi / step);
    a->step = step;
    a->first = first;
    a->ticks = (int)fmin(last - first + 1, MAX_TICKS);
    a->lo = fmax(first * step, -DBL_MAX);
    a->hi = fmin(last * step, DBL_MAX);
}

// A tick's label: no more decimals than the step needs; far from 1 (beyond 10^15, or steps below
// 10^-6), as many significant digits as tell the ticks apart, with an exponent.
static void tick_label(double v, double step, char *buf, size_t len)
{
    v = fabs(v) < step * 1e-9 ? 0.0 : v;
    double big = fmax(fabs(v), step);
    if (step >= 1e-6 && big < 1e15) {
        int decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
        snprintf(buf, len, "%.*f", decimals, v);
        return;
    }
    int digits = (int)ceil(log10(big / step) - 1e-9) + 1;
    snprintf(buf, len, "%.*g", digits < 1 ? 1 : digits > 17 ? 17 : digits, v);
}

// The frame, ticks, tick labels and grid lines of a plot area, and the axis labels.
static void draw_axes(cairo_t *cr, const struct axis *ax, const struct axis *ay,
                      const char *x_label, const char *y_label)
{
    char buf[32];
    cairo_set_line_width(cr, 1);
    for (int i = 0; i < ay->ticks; i++) {
        double v = (ay->first + i) * ay->step, y = to_page(ay, v);
        if (!isfinite(v))
            continue;
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, ax->p0, y);
        cairo_line_to(cr, ax->p1, y);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        tick_label(v, ay->step, buf, sizeof buf);
        text_at(cr, buf, ax->p0 - 6, y, 1, 0.5, false);
    }
    for (int i = 0; i < ax->ticks; i++) {
        double v = (ax->first + i) * ax->step, x = to_page(ax, v);
        if (!isfinite(v))
            continue;
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, x, ay->p0);
        cairo_line_to(cr, x, ay->p1);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        tick_label(v, ax->step, buf, sizeof buf);
        text_at(cr, buf, x, ay->p0 + 8, 0.5, 1, false);
    }
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    cairo_rectangle(cr, ax->p0, ay->p1, ax->p1 - ax->p0, ay->p0 - ay->p1);
    cairo_stroke(cr);
    text_at(cr, x_label, (ax->p0 + ax->p1) / 2, ay->p0 + 38, 0.5, 1, false);
    text_at(cr, y_label, ax->p0 - 52, (ay->p0 + ay->p1) / 2, 0.5, 0, true);
}

// ---- learning curves ---------------------------------------------------------------------------

enum { COL_EPOCH, COL_TRAIN, COL_TRAIN_REC, COL_TRAIN_KL, COL_TEST, COL_TEST_REC, COL_TEST_KL };
#define N_COLS PLOT_METRICS_COLUMNS
static const char *const col_names[N_COLS] = {
    "epoch", "train_neg_elbo", "train_rec", "train_kl", "test_neg_elbo", "test_rec", "test_kl"};

// Splits line at commas in place: fields[0 .. *n), at most max.
static void split_csv(char *line, char **fields, int max, int *n)
{
    *n = 0;
    for (char *p = line; *n < max;) {
        fields[(*n)++] = p;
        char *c = strchr(p, ',');
        if (!c)
            break;
        *c = '\0';
        p = c + 1;
    }
}

// The next line of fp into line (len bytes) without its line end: 1, 0 at the end of the file, -1
// when the line is longer than len - 1 bytes.
static int read_line(FILE *fp, char *line, size_t len)
{
    if (!fgets(line, (int)len, fp))
        return 0;
    if (strlen(line) == len - 1 && line[len - 2] != '\n') {
        int next = fgetc(fp); // the line end, or the end of the file, may come just after
        if (next != EOF && next != '\n')
            return -1;
    }
    line[strcspn(line, "\r\n")] = '\0';
    return 1;
}

int plot_read_metrics(const char *path, bool short_ok, double **rows, int *n,
                      struct clvae_error *err)
{
    const char *why;
    FILE *fp = regular_file_fopen(path, &why);
    if (!fp)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: %s", path, why);
    char line[4096], *fields[64];
    int nf, index[N_COLS], count = 0, cap = 64, rc = 0, got;
    double *v = xmalloc((size_t)cap * N_COLS * sizeof *v);
    if ((got = read_line(fp, line, sizeof line)) <= 0) {
        rc = clvae_fail(err, CLVAE_EXIT_DATA, "%s: %s", path,
                        got < 0 ? "line 1 is longer than 4095 bytes"
                                : "empty file (no header line)");
        goto done;
    }
    split_csv(line, fields, 64, &nf);
    for (int c = 0; c < N_COLS; c++) {
        index[c] = -1;
        for (int f = 0; f < nf; f++)
            if (strcmp(fields[f], col_names[c]) == 0)
                index[c] = f;
        if (index[c] < 0) {
            rc = clvae_fail(err, CLVAE_EXIT_DATA,
                            "%s: no column '%s' in the header (clvae train's metrics.csv has it)",
                            path, col_names[c]);
            goto done;
        }
    }
    for (int lineno = 2; (got = read_line(fp, line, sizeof line)) != 0; lineno++) {
        if (got < 0) {
            rc = clvae_fail(err, CLVAE_EXIT_DATA, "%s: line %d is longer than %zu bytes", path,
                            lineno, sizeof line - 1);
            goto done;
        }
        if (line[0] == '\0')
            continue;
        split_csv(line, fields, 64, &nf);
        if (count == MAX_EPOCHS) {
            rc = clvae_fail(err, CLVAE_EXIT_DATA, "%s: more than %d rows", path, MAX_EPOCHS);
            goto done;
        }
        if (count == cap)
            v = realloc(v, (size_t)(cap *= 2) * N_COLS * sizeof *v);
        if (!v) {
            rc = clvae_fail(err, CLVAE_EXIT_FAILURE, "%s: out of host memory", path);
            goto done;
        }
        for (int c = 0; c < N_COLS; c++) {
            const char *text = index[c] < nf ? fields[index[c]] : "";
            char *end;
            double x = strtod(text, &end);
            if (end == text || *end != '\0' || !isfinite(x)) {
                rc = clvae_fail(err, CLVAE_EXIT_DATA,
                                "%s: line %d: %s is '%.32s', not a finite number", path, lineno,
                                col_names[c], text);
                goto done;
            }
            v[(size_t)count * N_COLS + c] = x;
        }
        count++;
    }
    if (count < 2 && !short_ok)
        rc = clvae_fail(err, CLVAE_EXIT_DATA,
                        "%s: %d epoch row%s; learning curves need at least two epochs", path, count,
                        count == 1 ? "" : "s");
done:
    fclose(fp);
    if (rc) {
        free(v);
        return -1;
    }
    *rows = v;
    *n = count;
    return 0;
}

// One panel at (x0, y0) of w x h: columns train_col and test_col of rows against epoch.
static void curve_panel(cairo_t *cr, const double *rows, int n, int train_col, int test_col,
                        const char *title, double x0, double y0, double w, double h, bool legend)
{
    double lo = INFINITY, hi = -INFINITY, e_lo = INFINITY, e_hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        const double *r = rows + (size_t)i * N_COLS;
        lo = fmin(lo, fmin(r[train_col], r[test_col]));
        hi = fmax(hi, fmax(r[train_col], r[test_col]));
        e_lo = fmin(e_lo, r[COL_EPOCH]);
        e_hi = fmax(e_hi, r[COL_EPOCH]);
    }
    struct axis ax = {.p0 = x0 + 80, .p1 = x0 + w - 20}, ay = {.p0 = y0 + h - 60, .p1 = y0 + 40};
    nice_range(e_lo, e_hi, true, &ax);
    nice_range(lo, hi, false, &ay);
    draw_axes(cr, &ax, &ay, "epoch", "nats per image");
    cairo_set_font_size(cr, 15);
    text_at(cr, title, (ax.p0 + ax.p1) / 2, y0 + 14, 0.5, 1, false);
    cairo_set_font_size(cr, 13);
    const int cols[2] = {train_col, test_col};
    const double *colours[2] = {plot_train_colour, plot_test_colour};
    cairo_save(cr);
    cairo_rectangle(cr, ax.p0 - 5, ay.p1 - 5, ax.p1 - ax.p0 + 10, ay.p0 - ay.p1 + 10);
    cairo_clip(cr);
    for (int s = 0; s < 2; s++) {
        cairo_set_source_rgb(cr, colours[s][0], colours[s][1], colours[s][2]);
        cairo_set_line_width(cr, 2.5);
        for (int i = 0; i < n; i++) {
            const double *r = rows + (size_t)i * N_COLS;
            double x = to_page(&ax, r[COL_EPOCH]), y = to_page(&ay, r[cols[s]]);
            if (i == 0)
                cairo_move_to(cr, x, y);
            else
                cairo_line_to(cr, x, y);
        }
        cairo_stroke(cr);
        for (int i = 0; n <= 60 && i < n; i++) {
            const double *r = rows + (size_t)i * N_COLS;
            cairo_arc(cr, to_page(&ax, r[COL_EPOCH]), to_page(&ay, r[cols[s]]), 3.5, 0, 2 * PI);
            cairo_fill(cr);
        }
    }
    cairo_restore(cr);
    if (!legend)
        return;
    static const char *const names[2] = {"train", "test"};
    for (int s = 0; s < 2; s++) {
        double lx = ax.p1 - 90, ly = ay.p1 + 18 + 22 * s;
        cairo_set_source_rgb(cr, colours[s][0], colours[s][1], colours[s][2]);
        cairo_set_line_width(cr, 2.5);
        cairo_move_to(cr, lx, ly);
        cairo_line_to(cr, lx + 28, ly);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        text_at(cr, names[s], lx + 36, ly, 0, 0.5, false);
    }
}

int plot_curves_rows(const double *rows, int n, const char *png_path, struct clvae_error *err)
{
    cairo_surface_t *surface;
    cairo_t *cr = canvas(PLOT_CURVES_WIDTH, PLOT_CURVES_HEIGHT, 13, &surface);
    double w = PLOT_CURVES_WIDTH / 3.0;
    curve_panel(cr, rows, n, COL_TRAIN, COL_TEST, "negative ELBO", 0, 0, w, PLOT_CURVES_HEIGHT,
                true);
    curve_panel(cr, rows, n, COL_TRAIN_REC, COL_TEST_REC, "reconstruction: -log p(x|z)", w, 0, w,
                PLOT_CURVES_HEIGHT, false);
    curve_panel(cr, rows, n, COL_TRAIN_KL, COL_TEST_KL, "KL(q(z|x) || p(z))", 2 * w, 0, w,
                PLOT_CURVES_HEIGHT, false);
    cairo_destroy(cr);
    cairo_surface_flush(surface);
    int rc = png_path ? write_png(surface, png_path, err) : 0;
    cairo_surface_destroy(surface);
    return rc;
}

int plot_curves(const char *metrics_path, const char *png_path, bool short_ok,
                struct clvae_error *err)
{
    double *rows;
    int n;
    if (plot_read_metrics(metrics_path, short_ok, &rows, &n, err))
        return -1;
    int rc = n < 2 ? 1 : plot_curves_rows(rows, n, png_path, err);
    free(rows);
    return rc;
}

// ---- scatter -----------------------------------------------------------------------------------

int plot_scatter(const struct plot_scatter_data *d, const char *png_path, struct clvae_error *err)
{
    // The axes span the finite points (a model can map an image to an infinite mean); the others
    // are not drawn.
    double x_lo = INFINITY, x_hi = -INFINITY, y_lo = INFINITY, y_hi = -INFINITY;
    for (int i = 0; i < d->n; i++) {
        if (!isfinite(d->x[i]) || !isfinite(d->y[i]))
            continue;
        x_lo = fmin(x_lo, d->x[i]), x_hi = fmax(x_hi, d->x[i]);
        y_lo = fmin(y_lo, d->y[i]), y_hi = fmax(y_hi, d->y[i]);
    }
    if (!(x_lo <= x_hi))
        x_lo = x_hi = y_lo = y_hi = 0;
    cairo_surface_t *surface;
    cairo_t *cr = canvas(PLOT_SCATTER_WIDTH, PLOT_SCATTER_HEIGHT, 13, &surface);
    bool legend = d->cls && d->n_classes > 0;
    struct axis ax = {.p0 = 90, .p1 = PLOT_SCATTER_WIDTH - (legend ? 230 : 30)};
    struct axis ay = {.p0 = PLOT_SCATTER_HEIGHT - 70, .p1 = 50};
    nice_range(x_lo, x_hi, false, &ax);
    nice_range(y_lo, y_hi, false, &ay);
    draw_axes(cr, &ax, &ay, d->x_label, d->y_label);
    cairo_set_font_size(cr, 15);
    text_at(cr, d->title, (ax.p0 + ax.p1) / 2, 18, 0.5, 1, false);
    cairo_set_font_size(cr, 13);

    cairo_save(cr);
    cairo_rectangle(cr, ax.p0, ay.p1, ax.p1 - ax.p0, ay.p0 - ay.p1);
    cairo_clip(cr);
    int tw = d->thumb_w, th = d->thumb_h;
    cairo_surface_t *thumb = NULL;
    unsigned char *tdata = NULL;
    int stride = cairo_format_stride_for_width(CAIRO_FORMAT_RGB24, tw > 0 ? tw : 1);
    if (d->thumbs) {
        tdata = xcalloc((size_t)stride * (size_t)th, 1);
        thumb = cairo_image_surface_create_for_data(tdata, CAIRO_FORMAT_RGB24, tw, th, stride);
    }
    double scale = 24.0 / (th > tw ? th : tw); // thumbnails about 24 pixels across
    for (int i = 0; i < d->n; i++) {
        if (!isfinite(d->x[i]) || !isfinite(d->y[i]))
            continue;
        double px = to_page(&ax, d->x[i]), py = to_page(&ay, d->y[i]), rgb[3];
        plot_class_colour(d->cls ? d->cls[i] : 0, d->cls ? d->n_classes : 1, rgb);
        if (!thumb) {
            cairo_set_source_rgba(cr, rgb[0], rgb[1], rgb[2], 0.75);
            cairo_arc(cr, px, py, 2.6, 0, 2 * PI);
            cairo_fill(cr);
            continue;
        }
        // A grey image in the class colour on white: dark pixels take the colour. A colour
        // image as it is.
        cairo_surface_flush(thumb);
        for (int r = 0; r < th; r++)
            for (int c = 0; c < tw; c++) {
                uint32_t px32 = 0;
                if (d->thumb_channels == 3) {
                    const uint8_t *p = d->thumbs + (((size_t)i * th + r) * tw + c) * 3;
                    px32 = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
                } else {
                    double ink = d->thumbs[((size_t)i * th + r) * tw + c] / 255.0;
                    for (int k = 0; k < 3; k++)
                        px32 |= (uint32_t)lrint(255 * (1 - ink * (1 - rgb[k] * 0.6)))
                                << (16 - 8 * k);
                }
                memcpy(tdata + (size_t)r * stride + 4 * (size_t)c, &px32, 4);
            }
        cairo_surface_mark_dirty(thumb);
        cairo_save(cr);
        cairo_translate(cr, px - tw * scale / 2, py - th * scale / 2);
        cairo_scale(cr, scale, scale);
        cairo_set_source_surface(cr, thumb, 0, 0);
        cairo_paint_with_alpha(cr, 0.9);
        cairo_restore(cr);
    }
    if (thumb)
        cairo_surface_destroy(thumb);
    free(tdata);
    cairo_restore(cr);

    for (int c = 0; legend && c < d->n_classes; c++) {
        double rgb[3], lx = ax.p1 + 25, ly = ay.p1 + 10 + 24 * c;
        plot_class_colour(c, d->n_classes, rgb);
        cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
        cairo_arc(cr, lx + 6, ly, 6, 0, 2 * PI);
        cairo_fill(cr);
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        text_at(cr, d->class_names[c], lx + 20, ly, 0, 0.5, false);
    }
    cairo_destroy(cr);
    cairo_surface_flush(surface);
    int rc = write_png(surface, png_path, err);
    cairo_surface_destroy(surface);
    return rc;
}

// ---- PCA ---------------------------------------------------------------------------------------

int plot_pca(const double *data, int n, int d, double *proj, double explained[2],
             double *components)
{
    double *mean = xcalloc((size_t)d, sizeof *mean), *cov = xcalloc((size_t)d * d, sizeof *cov);
    double *w = xmalloc((size_t)d * sizeof *w);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++)
            mean[j] += data[(size_t)i * d + j] / n;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++)
            for (int k = 0; k <= j; k++)
                cov[(size_t)j * d + k] += (data[(size_t)i * d + j] - mean[j]) *
                                          (data[(size_t)i * d + k] - mean[k]) / (n - 1);
    // Eigenvalues ascending in w; cov's columns become the eigenvectors (row-major, lower half).
    int rc = LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'V', 'L', d, cov, d, w) == 0 ? 0 : -1;
    if (rc == 0) {
        double total = 0;
        for (int j = 0; j < d; j++)
            total += w[j] > 0 ? w[j] : 0;
        for (int p = 0; p < 2; p++) {
            int col = d - 1 - p, big = 0;
            for (int j = 0; j < d; j++)
                if (fabs(cov[(size_t)j * d + col]) > fabs(cov[(size_t)big * d + col]))
                    big = j;
            double sign = cov[(size_t)big * d + col] < 0 ? -1 : 1;
            for (int j = 0; j < d; j++)
                components[(size_t)p * d + j] = sign * cov[(size_t)j * d + col];
            explained[p] = total > 0 ? w[col] / total : 0;
        }
        for (int i = 0; i < n; i++)
            for (int p = 0; p < 2; p++) {
                double s = 0;
                for (int j = 0; j < d; j++)
                    s += (data[(size_t)i * d + j] - mean[j]) * components[(size_t)p * d + j];
                proj[(size_t)i * 2 + p] = s;
            }
    }
    free(mean);
    free(cov);
    free(w);
    return rc;
}
