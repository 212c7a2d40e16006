// png_grid tests: round trips through libpng's reader, the grid layout, and atomic-write failures.
#include <errno.h>
#include <png.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "png_grid.h"
#include "test_util.h"

// The largest pixel difference the check now running saw (-1: none).
static int cur_max_diff;

// A PNG as read back: whatever libpng reported, and the pixels when they are 8-bit grey or RGB.
struct image {
    uint32_t width, height;
    int bit_depth, color_type, interlace;
    uint8_t *pixels;
    char msg[256];
};

// Starts a check.
static void begin_check(void)
{
    tu_begin();
    cur_max_diff = -1;
}

// Ends the check: its line shows the largest pixel difference when it compared pixels.
static void end_check(const char *name)
{
    char diff[64] = "";
    if (cur_max_diff >= 0) {
        snprintf(diff, sizeof diff, " (max pixel diff %d)", cur_max_diff);
    }
    tu_end("%s%s", name, diff);
}

// libpng read error callback: keeps the message for the check's report instead of printing it.
static void on_read_error(png_structp png, png_const_charp msg)
{
    struct image *img = png_get_error_ptr(png);
    snprintf(img->msg, sizeof img->msg, "%s", msg);
    png_longjmp(png, 1);
}

// libpng read warning callback: silent.
static void on_read_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

// Reads the rows of an 8-bit grey or RGB image into img->pixels.
static void read_rows(png_structp png, struct image *img)
{
    size_t row = (size_t)img->width * (img->color_type == PNG_COLOR_TYPE_RGB ? 3 : 1);
    img->pixels = malloc((size_t)img->height * row);
    if (!img->pixels) {
        png_error(png, "out of memory");
    }
    for (uint32_t y = 0; y < img->height; y++) {
        png_read_row(png, img->pixels + (size_t)y * row, NULL);
    }
}

// Reads path with libpng's reader; returns 0, or -1 with img->msg set.
static int read_png(const char *path, struct image *img)
{
    memset(img, 0, sizeof *img);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        snprintf(img->msg, sizeof img->msg, "%s", strerror(errno));
        return -1;
    }
    png_structp png =
        png_create_read_struct(PNG_LIBPNG_VER_STRING, img, on_read_error, on_read_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        fclose(fp);
        snprintf(img->msg, sizeof img->msg, "cannot create libpng read structures");
        return -1;
    }
    // Everything changed past here lives in *img, not in this frame, so it survives a longjmp.
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        fclose(fp);
        free(img->pixels);
        img->pixels = NULL;
        return -1;
    }
    png_init_io(png, fp);
    png_read_info(png, info);
    png_get_IHDR(png, info, &img->width, &img->height, &img->bit_depth, &img->color_type,
                 &img->interlace, NULL, NULL);
    if (img->bit_depth == 8 &&
        (img->color_type == PNG_COLOR_TYPE_GRAY || img->color_type == PNG_COLOR_TYPE_RGB) &&
        img->interlace == PNG_INTERLACE_NONE) {
        read_rows(png, img);
        png_read_end(png, NULL);
    }
    png_destroy_read_struct(&png, &info, NULL);
    fclose(fp);
    return 0;
}

// Reads a whole (small) file; returns its length, or -1.
static long read_file(const char *path, uint8_t *buf, size_t cap)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        return -1;
    }
    size_t len = fread(buf, 1, cap, fp);
    fclose(fp);
    return (long)len;
}

// Compares a read-back image with the expected pixels, updating the check's max difference.
static void expect_pixels(const struct image *img, const uint8_t *want, int height, int width)
{
    tu_expect(img->width == (uint32_t)width && img->height == (uint32_t)height,
              "size %ux%u, want %dx%d", img->height, img->width, height, width);
    tu_expect(img->bit_depth == 8, "bit depth %d, want 8", img->bit_depth);
    tu_expect(img->color_type == PNG_COLOR_TYPE_GRAY, "color type %d, want gray", img->color_type);
    tu_expect(img->interlace == PNG_INTERLACE_NONE, "interlace %d, want none", img->interlace);
    if (!img->pixels || img->width != (uint32_t)width || img->height != (uint32_t)height) {
        tu_expect(0, "no comparable pixels");
        return;
    }
    int max_diff = 0;
    long wrong = 0;
    for (size_t i = 0; i < (size_t)height * (size_t)width; i++) {
        int d = abs((int)img->pixels[i] - (int)want[i]);
        max_diff = d > max_diff ? d : max_diff;
        wrong += d != 0;
    }
    cur_max_diff = max_diff > cur_max_diff ? max_diff : cur_max_diff;
    tu_expect(wrong == 0, "%ld pixel(s) differ", wrong);
}

// Checks a failed call's error: its status, and a message "<path>: <reason>" on one line.
static void expect_output_error(int rc, const struct clvae_error *err, const char *path)
{
    size_t len = strlen(path);
    tu_expect(rc == -1, "returned %d, want -1", rc);
    tu_expect(err->status == CLVAE_EXIT_OUTPUT, "status %d, want %d", err->status,
              CLVAE_EXIT_OUTPUT);
    tu_expect(strncmp(err->msg, path, len) == 0 && strncmp(err->msg + len, ": ", 2) == 0 &&
                  err->msg[len + 2] != '\0',
              "message \"%s\" does not start with \"%s: \"", err->msg, path);
    tu_expect(strchr(err->msg, '\n') == NULL, "message \"%s\" holds a newline", err->msg);
}

// Fills an image with a pattern that differs in every neighbouring pixel.
static void fill_pattern(uint8_t *pixels, int height, int width, int salt)
{
    for (int y = 0; y < height; y++) {
        for (int x = 0; x < width; x++) {
            pixels[y * width + x] = (uint8_t)((y * 7 + x * 3 + salt) & 255);
        }
    }
}

// Writes and reads back a 37x53 pattern; also checks the mode the umask gives.
static void test_gray_round_trip(void)
{
    enum { H = 37, W = 53 };
    uint8_t pixels[H * W];
    char path[TU_PATH_MAX];
    struct clvae_error err = {0};
    struct image img;
    struct stat st;

    begin_check();
    fill_pattern(pixels, H, W, 0);
    tu_in_tmp(path, "gray.png");
    int rc = png_write_gray(path, pixels, H, W, &err);
    tu_expect(rc == 0, "png_write_gray: %s", err.msg);
    tu_expect(read_png(path, &img) == 0, "read back: %s", img.msg);
    expect_pixels(&img, pixels, H, W);
    free(img.pixels);
    tu_expect(stat(path, &st) == 0 && (st.st_mode & 0777) == 0644, "mode %o, want 644 (umask 022)",
              (unsigned)(st.st_mode & 0777));
    tu_expect_no_tmp(tu_tmp_dir);
    end_check("gray 37x53 round trip");
}

// Writes 7 tiles of 5x4, 3 a row, pad 2, and checks every pixel of the 23x20 grid.
static void test_grid(void)
{
    enum {
        N = 7,
        TH = 5,
        TW = 4,
        COLS = 3,
        PAD = 2,
        GH = 3 * TH + 4 * PAD,
        GW = COLS * TW + 4 * PAD
    };
    uint8_t tiles[N * TH * TW];
    uint8_t want[GH * GW];
    char path[TU_PATH_MAX];
    struct clvae_error err = {0};
    struct image img;

    begin_check();
    // Never 0, so a tile pixel cannot pass for padding.
    for (int t = 0; t < N; t++) {
        for (int i = 0; i < TH * TW; i++) {
            tiles[t * TH * TW + i] = (uint8_t)(1 + t * 31 + i);
        }
    }
    // Built pixel by pixel from the grid's definition, not from the module's copy loop.
    int tile_pixels = 0;
    for (int y = 0; y < GH; y++) {
        for (int x = 0; x < GW; x++) {
            int ry = (y - PAD) % (TH + PAD), rx = (x - PAD) % (TW + PAD);
            int row = (y - PAD) / (TH + PAD), col = (x - PAD) / (TW + PAD);
            int t = row * COLS + col;
            int inside = y >= PAD && x >= PAD && ry < TH && rx < TW && t < N;
            want[y * GW + x] = inside ? tiles[t * TH * TW + ry * TW + rx] : 0;
            tile_pixels += inside;
        }
    }
    tu_expect(tile_pixels == N * TH * TW, "expected grid covers %d tile pixels, want %d",
              tile_pixels, N * TH * TW);
    tu_expect(want[0] == 0 && want[PAD * GW + PAD] == 1 &&
                  want[(GH - 1 - PAD) * GW + GW - 1 - PAD] == 0,
              "expected grid corners wrong");
    tu_in_tmp(path, "grid.png");
    int rc = png_write_grid(path, tiles, N, TH, TW, COLS, PAD, &err);
    tu_expect(rc == 0, "png_write_grid: %s", err.msg);
    tu_expect(read_png(path, &img) == 0, "read back: %s", img.msg);
    expect_pixels(&img, want, GH, GW);
    free(img.pixels);
    tu_expect_no_tmp(tu_tmp_dir);
    end_check("grid 7 tiles 5x4, cols 3, pad 2 (23x20)");

    // pad 0 and a single full row: the tiles sit edge to edge.
    begin_check();
    uint8_t row_want[TH * 2 * TW];
    for (int y = 0; y < TH; y++) {
        for (int x = 0; x < 2 * TW; x++) {
            row_want[y * 2 * TW + x] = tiles[(x / TW) * TH * TW + y * TW + x % TW];
        }
    }
    rc = png_write_grid(path, tiles, 2, TH, TW, 2, 0, &err);
    tu_expect(rc == 0, "png_write_grid: %s", err.msg);
    tu_expect(read_png(path, &img) == 0, "read back: %s", img.msg);
    expect_pixels(&img, row_want, TH, 2 * TW);
    free(img.pixels);
    tu_expect_no_tmp(tu_tmp_dir);
    end_check("grid 2 tiles, cols 2, pad 0");
}

// An RGB grid: 3 tiles of 2x3 colour pixels, 2 a row, pad 1, read back as an 8-bit RGB PNG whose
// every byte is what the grid's definition puts there.
static void test_rgb_grid(void)
{
    enum { N = 3, TH = 2, TW = 3, COLS = 2, PAD = 1, C = 3 };
    enum { GH = 2 * TH + 3 * PAD, GW = COLS * TW + (COLS + 1) * PAD };
    uint8_t tiles[N * TH * TW * C], want[GH * GW * C];
    char path[TU_PATH_MAX];
    struct clvae_error err = {0};
    struct image img;
    begin_check();
    for (int i = 0; i < N * TH * TW * C; i++) {
        tiles[i] = (uint8_t)(1 + i * 5);
    }
    for (int y = 0; y < GH; y++) {
        for (int x = 0; x < GW; x++) {
            int ry = (y - PAD) % (TH + PAD), rx = (x - PAD) % (TW + PAD);
            int t = (y - PAD) / (TH + PAD) * COLS + (x - PAD) / (TW + PAD);
            int inside = y >= PAD && x >= PAD && ry < TH && rx < TW && t < N;
            for (int c = 0; c < C; c++) {
                want[(y * GW + x) * C + c] = inside ? tiles[((t * TH + ry) * TW + rx) * C + c] : 0;
            }
        }
    }
    tu_in_tmp(path, "rgb.png");
    int rc = png_write_tiles(path, tiles, N, TH, TW, C, COLS, PAD, &err);
    tu_expect(rc == 0, "png_write_tiles: %s", err.msg);
    tu_expect(read_png(path, &img) == 0, "read back: %s", img.msg);
    tu_expect(img.color_type == PNG_COLOR_TYPE_RGB && img.width == GW && img.height == GH,
              "colour type %d, %ux%u; want RGB %dx%d", img.color_type, img.width, img.height, GW,
              GH);
    tu_expect(img.pixels && memcmp(img.pixels, want, sizeof want) == 0,
              "the RGB grid's bytes differ from its definition");
    free(img.pixels);
    tu_expect(png_write_tiles(path, tiles, N, TH, TW, 2, COLS, PAD, &err) == -1 &&
                  err.status == CLVAE_EXIT_FAILURE,
              "2 channels accepted");
    tu_expect_no_tmp(tu_tmp_dir);
    end_check("RGB grid 3 tiles 2x3, cols 2, pad 1");
    unlink(path);
}

// Writes over an existing PNG and over a non-PNG file; the new image must replace each.
static void test_overwrite(void)
{
    uint8_t first[10 * 12], second[6 * 9];
    char path[TU_PATH_MAX], other[TU_PATH_MAX];
    struct clvae_error err = {0};
    struct image img;

    begin_check();
    fill_pattern(first, 10, 12, 1);
    fill_pattern(second, 6, 9, 100);
    tu_in_tmp(path, "over.png");
    tu_expect(png_write_gray(path, first, 10, 12, &err) == 0, "first write: %s", err.msg);
    tu_expect(png_write_gray(path, second, 6, 9, &err) == 0, "second write: %s", err.msg);
    tu_expect(read_png(path, &img) == 0, "read back: %s", img.msg);
    expect_pixels(&img, second, 6, 9);
    free(img.pixels);

    tu_in_tmp(other, "not-a-png.png");
    const char *text = "an older, larger file that is not a png at all\n";
    tu_expect(tu_write_file(other, text, strlen(text)) == 0, "cannot create %s", other);
    tu_expect(png_write_gray(other, first, 10, 12, &err) == 0, "write over text: %s", err.msg);
    tu_expect(read_png(other, &img) == 0, "read back: %s", img.msg);
    expect_pixels(&img, first, 10, 12);
    free(img.pixels);
    tu_expect_no_tmp(tu_tmp_dir);
    end_check("write over an existing file replaces it");
}

// Writes into a directory that does not exist, and onto a path that is a directory.
static void test_bad_paths(void)
{
    uint8_t pixels[4 * 4] = {0};
    char path[TU_PATH_MAX], dir[TU_PATH_MAX];
    struct clvae_error err = {0};

    begin_check();
    tu_in_tmp(path, "missing/sub/out.png");
    int rc = png_write_gray(path, pixels, 4, 4, &err);
    expect_output_error(rc, &err, path);
    tu_expect(!tu_exists(path), "%s exists after a failed write", path);
    tu_expect(!tu_exists(tu_in_tmp(dir, "missing")), "%s was created", dir);
    tu_expect_no_tmp(tu_tmp_dir);
    end_check("write into a missing directory fails with status 4");
    printf("     message: %s\n", err.msg);

    begin_check();
    struct clvae_error grid_err = {0};
    rc = png_write_grid(path, pixels, 1, 4, 4, 1, 1, &grid_err);
    expect_output_error(rc, &grid_err, path);
    tu_expect(!tu_exists(path), "%s exists after a failed write", path);
    tu_expect_no_tmp(tu_tmp_dir);
    end_check("grid into a missing directory fails with status 4");

    begin_check();
    tu_in_tmp(path, "a-directory");
    tu_expect(mkdir(path, 0700) == 0, "mkdir %s: %s", path, strerror(errno));
    err = (struct clvae_error){0};
    rc = png_write_gray(path, pixels, 4, 4, &err);
    expect_output_error(rc, &err, path);
    tu_expect(tu_count_tmp_files(path) == 0, "temporary file inside %s", path);
    tu_expect_no_tmp(tu_tmp_dir);
    end_check("write onto a directory fails with status 4");
    rmdir(path);

    // A FIFO stands in for a device such as /dev/null: renaming over it would destroy it.
    begin_check();
    tu_in_tmp(path, "a-fifo");
    tu_expect(mkfifo(path, 0600) == 0, "mkfifo %s: %s", path, strerror(errno));
    err = (struct clvae_error){0};
    rc = png_write_gray(path, pixels, 4, 4, &err);
    expect_output_error(rc, &err, path);
    struct stat st;
    tu_expect(lstat(path, &st) == 0 && S_ISFIFO(st.st_mode), "%s is no longer a FIFO", path);
    tu_expect_no_tmp(tu_tmp_dir);
    end_check("write onto a FIFO fails with status 4 and keeps it");
    unlink(path);
}

// Writes into a directory without write permission (root may bypass it: then only noted).
static void test_unwritable_dir(void)
{
    uint8_t pixels[8 * 8];
    uint8_t after[256];
    char dir[TU_PATH_MAX], path[TU_PATH_MAX], fresh[TU_PATH_MAX];
    struct clvae_error err = {0};
    const char *old = "previous contents\n";

    fill_pattern(pixels, 8, 8, 5);
    tu_in_tmp(dir, "readonly");
    tu_join(path, dir, "keep.png");
    tu_join(fresh, dir, "new.png");
    begin_check();
    tu_expect(mkdir(dir, 0700) == 0, "mkdir %s: %s", dir, strerror(errno));
    tu_expect(tu_write_file(path, old, strlen(old)) == 0, "cannot create %s", path);
    tu_expect(chmod(dir, 0500) == 0, "chmod %s: %s", dir, strerror(errno));
    int rc = png_write_gray(path, pixels, 8, 8, &err);
    if (rc == 0 && geteuid() == 0) {
        printf("note unwritable directory: skipped, running as root bypasses the permission\n");
        chmod(dir, 0700);
        unlink(path);
        rmdir(dir);
        return;
    }
    expect_output_error(rc, &err, path);
    long len = read_file(path, after, sizeof after);
    tu_expect(len == (long)strlen(old) && memcmp(after, old, strlen(old)) == 0,
              "existing %s changed", path);
    err = (struct clvae_error){0};
    rc = png_write_gray(fresh, pixels, 8, 8, &err);
    expect_output_error(rc, &err, fresh);
    tu_expect(!tu_exists(fresh), "%s exists after a failed write", fresh);
    tu_expect_no_tmp(dir);
    end_check("write into an unwritable directory fails with status 4");
    chmod(dir, 0700);
    unlink(path);
    rmdir(dir);
}

// A full disk, simulated with RLIMIT_FSIZE: writes past the limit fail with EFBIG, as ENOSPC would.
static void test_full_disk(void)
{
    enum { H = 256, W = 256, LIMIT = 4096 };
    static uint8_t noise[H * W];
    uint8_t after[256];
    char path[TU_PATH_MAX], fresh[TU_PATH_MAX];
    struct clvae_error err = {0};
    struct rlimit saved, small;
    const char *old = "an earlier image\n";

    // Incompressible, so the PNG is far past the limit.
    uint32_t state = 12345;
    for (size_t i = 0; i < sizeof noise; i++) {
        state = state * 1664525u + 1013904223u;
        noise[i] = (uint8_t)(state >> 24);
    }
    tu_in_tmp(path, "full.png");
    tu_in_tmp(fresh, "full-new.png");
    begin_check();
    tu_expect(tu_write_file(path, old, strlen(old)) == 0, "cannot create %s", path);
    tu_expect(getrlimit(RLIMIT_FSIZE, &saved) == 0, "getrlimit: %s", strerror(errno));
    small = saved;
    small.rlim_cur = LIMIT;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    tu_expect(setrlimit(RLIMIT_FSIZE, &small) == 0, "setrlimit: %s", strerror(errno));
    int rc = png_write_gray(path, noise, H, W, &err);
    struct clvae_error fresh_err = {0};
    int fresh_rc = png_write_gray(fresh, noise, H, W, &fresh_err);
    tu_expect(setrlimit(RLIMIT_FSIZE, &saved) == 0, "restoring the limit: %s", strerror(errno));
    signal(SIGXFSZ, old_handler);

    expect_output_error(rc, &err, path);
    tu_expect(strstr(err.msg, strerror(EFBIG)) != NULL, "message \"%s\" lacks \"%s\"", err.msg,
              strerror(EFBIG));
    long len = read_file(path, after, sizeof after);
    tu_expect(len == (long)strlen(old) && memcmp(after, old, strlen(old)) == 0,
              "existing %s changed", path);
    expect_output_error(fresh_rc, &fresh_err, fresh);
    tu_expect(!tu_exists(fresh), "%s exists after a failed write", fresh);
    tu_expect_no_tmp(tu_tmp_dir);
    end_check("write past a full disk (RLIMIT_FSIZE) fails with status 4");
    printf("     message: %s\n", err.msg);
    unlink(path);
}

// Invalid sizes are programming errors: status 1, and nothing is written.
static void test_invalid_args(void)
{
    uint8_t pixels[16] = {0};
    char path[TU_PATH_MAX];
    struct clvae_error err;

    tu_in_tmp(path, "invalid.png");
    begin_check();
    struct {
        const char *what;
        int n, tile_h, tile_w, cols, pad;
    } grids[] = {
        {"n=0", 0, 2, 2, 1, 0},
        {"cols=0", 1, 2, 2, 0, 0},
        {"tile_h=0", 1, 0, 2, 1, 0},
        {"tile_w=-1", 1, 2, -1, 1, 0},
        {"pad=-1", 1, 2, 2, 1, -1},
        {"grid too wide", 4, 2, 2, 1 << 20, 0},
        {"grid too tall", 1 << 20, 2, 2, 1, 0},
        {"overflowing pad", 1, 2, 2, 2, 1 << 30},
    };
    for (size_t i = 0; i < sizeof grids / sizeof grids[0]; i++) {
        err = (struct clvae_error){0};
        int rc = png_write_grid(path, pixels, grids[i].n, grids[i].tile_h, grids[i].tile_w,
                                grids[i].cols, grids[i].pad, &err);
        tu_expect(rc == -1 && err.status == CLVAE_EXIT_FAILURE && err.msg[0] != '\0',
                  "grid %s: rc %d, status %d", grids[i].what, rc, err.status);
    }
    struct {
        const char *what;
        int height, width;
    } grays[] = {
        {"height=0", 0, 4},
        {"width=0", 4, 0},
        {"height=-3", -3, 4},
        {"width=40000", 1, 40000},
    };
    for (size_t i = 0; i < sizeof grays / sizeof grays[0]; i++) {
        err = (struct clvae_error){0};
        int rc = png_write_gray(path, pixels, grays[i].height, grays[i].width, &err);
        tu_expect(rc == -1 && err.status == CLVAE_EXIT_FAILURE, "gray %s: rc %d, status %d",
                  grays[i].what, rc, err.status);
    }
    err = (struct clvae_error){0};
    tu_expect(png_write_gray(path, NULL, 4, 4, &err) == -1 && err.status == CLVAE_EXIT_FAILURE,
              "NULL pixels accepted");
    err = (struct clvae_error){0};
    tu_expect(png_write_gray("", pixels, 4, 4, &err) == -1 && err.status == CLVAE_EXIT_FAILURE,
              "empty path accepted");
    err = (struct clvae_error){0};
    tu_expect(png_write_grid(path, NULL, 1, 4, 4, 1, 0, &err) == -1 &&
                  err.status == CLVAE_EXIT_FAILURE,
              "NULL tiles accepted");
    // err is optional.
    tu_expect(png_write_grid(path, pixels, 0, 2, 2, 1, 0, NULL) == -1, "n=0 without err accepted");
    tu_expect(!tu_exists(path), "%s written by an invalid call", path);
    tu_expect_no_tmp(tu_tmp_dir);
    end_check("invalid arguments fail with status 1 and write nothing");
}

// Runs every check in a fresh temporary directory; exits non-zero if any failed.
int main(void)
{
    tu_init("test_png");
    tu_make_tmp_dir();
    umask(022);

    test_gray_round_trip();
    test_grid();
    test_rgb_grid();
    test_overwrite();
    test_bad_paths();
    test_unwritable_dir();
    test_full_disk();
    test_invalid_args();
    if (tu_remove_tmp_dir() != 0) {
        tu_checks++;
        tu_failures++;
    }
    return tu_summary();
}
