/*
 * The live demo's producer: renders an animated picture into a named
 * SharedArea, one frame per update, for any number of PSGI workers to stream
 * to browsers (examples/demo/app.psgi).
 *
 *   sharedarea-demo-producer [-n NAME] [-W WIDTH] [-H HEIGHT] [-r FPS] [-c FRAMES] [-v]
 *
 *   -n NAME    the area: name=NAME (default sharedarea-demo); created if absent
 *   -W, -H     picture size in pixels (default 640x480)
 *   -r FPS     frames per second (default 30)
 *   -c FRAMES  stop after this many frames (default 0: until SIGINT/SIGTERM)
 *   -v         print the achieved frame rate every 5 seconds
 *
 * On SIGINT, SIGTERM or SIGHUP it finishes the frame, says how many frames it
 * wrote and dies of that signal (so that a calling shell sees the signal).
 * A frame is one sharedarea_write() of the whole picture at position 0, so
 * each frame is written under the area's write lock and counts exactly one
 * update (what sharedarea_wait wakes on). `used` is set to the frame's length,
 * so a WebSocket send "to the end" sends exactly one frame.
 *
 * Frame layout (all integers little-endian):
 *
 *   offset  size  field
 *        0     4  magic "SAD1"
 *        4     2  width  (pixels)
 *        6     2  height (pixels)
 *        8     8  frame number, 1 for the first frame
 *       16     8  time the frame was written, microseconds since the Unix epoch
 *       24     4  frames per second the producer aims at
 *       28     4  offset of the palette (64)
 *       32     4  offset of the pixels  (64 + 1024)
 *       36    28  reserved, zero
 *       64  1024  palette: 256 entries of R, G, B, A
 *     1088   W*H  pixels: one palette index per pixel, rows top to bottom
 *
 * The picture is a plasma (two moving rings plus two waves) in a rotating
 * palette, with "SHAREDAREA" and the frame number drawn on top; index 0 is
 * black and 255 white in every frame.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sharedarea.h"

#define HEADER_LEN 64u
#define PALETTE_LEN 1024u
#define PIXELS_AT (HEADER_LEN + PALETTE_LEN)

static volatile sig_atomic_t stop_signal = 0;

static void on_stop(int sig) { stop_signal = sig; }

static void die(const char *what, int32_t status) {
    fprintf(stderr, "sharedarea-demo-producer: %s failed: %s (%s)\n", what,
            sharedarea_last_error(), sharedarea_strerror(status));
    exit(1);
}

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static double now_s(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- a 5x7 font, just the characters the overlay uses ------------------ */

struct glyph {
    char c;
    uint8_t rows[7]; /* bit 4 is the leftmost column */
};

static const struct glyph font[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}},
    {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}},
    {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}},
    {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}},
    {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}},
    {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'D', {0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}},
    {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}},
    {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}},
};

static const uint8_t *glyph_rows(char c) {
    for (size_t i = 0; i < sizeof font / sizeof font[0]; i++)
        if (font[i].c == c) return font[i].rows;
    return NULL; /* a space, or a character the font lacks */
}

/* Draws `text` with its top-left corner at (x0, y0), each font dot a
 * scale x scale square in colour `ink`, clipped to the picture. */
static void draw_text(uint8_t *pix, int w, int h, int x0, int y0, int scale,
                      uint8_t ink, const char *text) {
    for (int n = 0; text[n]; n++) {
        const uint8_t *rows = glyph_rows(text[n]);
        if (!rows) continue;
        int gx = x0 + n * 6 * scale;
        for (int r = 0; r < 7; r++)
            for (int col = 0; col < 5; col++) {
                if (!(rows[r] & (0x10 >> col))) continue;
                for (int dy = 0; dy < scale; dy++)
                    for (int dx = 0; dx < scale; dx++) {
                        int x = gx + col * scale + dx, y = y0 + r * scale + dy;
                        if (x >= 0 && x < w && y >= 0 && y < h) pix[(size_t)y * w + x] = ink;
                    }
            }
    }
}

/* White text with a black shadow, readable on any plasma colour. */
static void draw_label(uint8_t *pix, int w, int h, int x, int y, int scale, const char *text) {
    int off = scale > 1 ? scale / 2 : 1;
    draw_text(pix, w, h, x + off, y + off, scale, 0, text);
    draw_text(pix, w, h, x, y, scale, 255, text);
}

/* ---- the picture -------------------------------------------------------- */

struct scene {
    int w, h;
    uint8_t *rings;   /* (2w x 2h) table: a ring pattern centred at (w, h) */
    uint8_t *colwave; /* per frame: one value per column */
    uint8_t *rowwave; /* per frame: one value per row */
};

static int scene_init(struct scene *s, int w, int h) {
    s->w = w;
    s->h = h;
    s->rings = malloc((size_t)4 * w * h);
    s->colwave = malloc((size_t)w);
    s->rowwave = malloc((size_t)h);
    if (!s->rings || !s->colwave || !s->rowwave) return -1;
    double unit = 40.0 * (double)w / 640.0;
    for (int y = 0; y < 2 * h; y++)
        for (int x = 0; x < 2 * w; x++) {
            double d = hypot((double)(x - w), (double)(y - h));
            s->rings[(size_t)y * 2 * w + x] = (uint8_t)(63.5 + 63.0 * sin(d / unit * 3.14159));
        }
    return 0;
}

static void palette_for(uint8_t *pal, uint64_t frame) {
    double phase = (double)frame / 240.0;
    for (int i = 0; i < 256; i++) {
        double t = (double)i / 256.0 + phase;
        pal[4 * i + 0] = (uint8_t)(127.5 + 127.0 * cos(6.28318 * (t + 0.00)));
        pal[4 * i + 1] = (uint8_t)(127.5 + 127.0 * cos(6.28318 * (t + 0.33)));
        pal[4 * i + 2] = (uint8_t)(127.5 + 127.0 * cos(6.28318 * (t + 0.67)));
        pal[4 * i + 3] = 255;
    }
    memcpy(pal, "\0\0\0\xff", 4);               /* 0: black */
    memcpy(pal + 4 * 255, "\xff\xff\xff\xff", 4); /* 255: white */
}

static void render(const struct scene *s, uint8_t *frame_buf, uint64_t frame, uint32_t fps) {
    int w = s->w, h = s->h;
    double t = (double)frame / (double)fps; /* seconds of animation */
    uint8_t *pix = frame_buf + PIXELS_AT;

    for (int x = 0; x < w; x++)
        s->colwave[x] = (uint8_t)(63.5 + 63.0 * sin((double)x / w * 9.0 + t * 1.7));
    for (int y = 0; y < h; y++)
        s->rowwave[y] = (uint8_t)(63.5 + 63.0 * sin((double)y / h * 7.0 - t * 2.3));

    /* two ring centres wandering over the picture */
    int ax = (int)(w / 2 + w * 0.35 * sin(t * 0.9)), ay = (int)(h / 2 + h * 0.35 * cos(t * 1.3));
    int bx = (int)(w / 2 + w * 0.40 * cos(t * 0.7)), by = (int)(h / 2 + h * 0.30 * sin(t * 1.1));
    size_t stride = (size_t)2 * w;
    for (int y = 0; y < h; y++) {
        const uint8_t *ra = s->rings + (size_t)(y - ay + h) * stride + (size_t)(w - ax);
        const uint8_t *rb = s->rings + (size_t)(y - by + h) * stride + (size_t)(w - bx);
        uint8_t *row = pix + (size_t)y * w;
        unsigned rw = s->rowwave[y];
        for (int x = 0; x < w; x++) {
            unsigned v = (unsigned)ra[x] + rb[x] + s->colwave[x] + rw; /* 0..508 */
            row[x] = (uint8_t)(1 + v / 2);                            /* 1..255 */
            if (row[x] == 255) row[x] = 254;                          /* keep 255 for text */
        }
    }

    int big = w >= 480 ? 4 : 2, small = big / 2 > 0 ? big / 2 : 1;
    draw_label(pix, w, h, (w - 10 * 6 * big) / 2, h / 2 - 10 * big, big, "SHAREDAREA");
    char label[40];
    snprintf(label, sizeof label, "FRAME %llu", (unsigned long long)frame);
    draw_label(pix, w, h, (w - (int)strlen(label) * 6 * small * 2) / 2, h / 2 + 2 * big, small * 2,
               label);

    uint8_t *hd = frame_buf;
    memset(hd, 0, HEADER_LEN);
    memcpy(hd, "SAD1", 4);
    put16(hd + 4, (uint16_t)w);
    put16(hd + 6, (uint16_t)h);
    put64(hd + 8, frame);
    put64(hd + 16, (uint64_t)(now_s(CLOCK_REALTIME) * 1e6));
    put32(hd + 24, fps);
    put32(hd + 28, HEADER_LEN);
    put32(hd + 32, PIXELS_AT);
    palette_for(frame_buf + HEADER_LEN, frame);
}

/* ---- main --------------------------------------------------------------- */

static long number_arg(int opt, const char *s, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "sharedarea-demo-producer: -%c %s: expected a whole number from %ld to %ld\n",
                opt, s, lo, hi);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    const char *name = "sharedarea-demo";
    long w = 640, h = 480, fps = 30, max_frames = 0;
    int verbose = 0, opt;
    while ((opt = getopt(argc, argv, "n:W:H:r:c:vh")) != -1) {
        switch (opt) {
        case 'n': name = optarg; break;
        case 'W': w = number_arg(opt, optarg, 16, 4096); break;
        case 'H': h = number_arg(opt, optarg, 16, 4096); break;
        case 'r': fps = number_arg(opt, optarg, 1, 240); break;
        case 'c': max_frames = number_arg(opt, optarg, 0, 1L << 40); break;
        case 'v': verbose = 1; break;
        default:
            fprintf(stderr, "usage: %s [-n NAME] [-W WIDTH] [-H HEIGHT] [-r FPS] [-c FRAMES] [-v]\n",
                    argv[0]);
            return opt == 'h' ? 0 : 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "sharedarea-demo-producer: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (sharedarea_abi_version() != SHAREDAREA_ABI_VERSION) {
        fprintf(stderr, "sharedarea-demo-producer: built for ABI %d, library has %u\n",
                SHAREDAREA_ABI_VERSION, sharedarea_abi_version());
        return 1;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop; /* no SA_RESTART: the frame sleep returns at once */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    uint64_t frame_len = PIXELS_AT + (uint64_t)w * (uint64_t)h;
    uint64_t area_len = (frame_len + 4095) / 4096 * 4096;
    char spec[300];
    if (snprintf(spec, sizeof spec, "name=%s,size=%llu", name, (unsigned long long)area_len) >=
        (int)sizeof spec) {
        fprintf(stderr, "sharedarea-demo-producer: -n %s: name too long\n", name);
        return 2;
    }
    int32_t id = sharedarea_init(spec);
    if (id < 0) die(spec, id);
    int32_t rc = sharedarea_set_used(id, frame_len);
    if (rc < 0) die("sharedarea_set_used", rc);

    struct scene scene;
    uint8_t *buf = calloc(1, frame_len);
    if (!buf || scene_init(&scene, (int)w, (int)h) < 0) {
        fprintf(stderr, "sharedarea-demo-producer: out of memory\n");
        return 1;
    }
    printf("sharedarea-demo-producer: area %s (%llu bytes): %ldx%ld at %ld frames per second\n",
           spec, (unsigned long long)area_len, w, h, fps);
    fflush(stdout);

    double period = 1.0 / (double)fps, next = now_s(CLOCK_MONOTONIC);
    double report_at = next + 5.0;
    uint64_t frame = 0, reported = 0;
    while (!stop_signal && (max_frames == 0 || frame < (uint64_t)max_frames)) {
        frame++;
        render(&scene, buf, frame, (uint32_t)fps);
        rc = sharedarea_write(id, 0, buf, frame_len); /* one locked copy, one update */
        if (rc < 0) die("sharedarea_write", rc);

        double now = now_s(CLOCK_MONOTONIC);
        if (verbose && now >= report_at) {
            printf("sharedarea-demo-producer: frame %llu, %.1f frames per second\n",
                   (unsigned long long)frame, (double)(frame - reported) / (now - report_at + 5.0));
            fflush(stdout);
            reported = frame;
            report_at = now + 5.0;
        }
        next += period;
        if (next < now - period) next = now; /* fell behind (suspended?): don't race to catch up */
        struct timespec ts;
        ts.tv_sec = (time_t)next;
        ts.tv_nsec = (long)((next - (double)ts.tv_sec) * 1e9);
        while (!stop_signal && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
        }
    }
    printf("sharedarea-demo-producer: %s after %llu frames\n",
           stop_signal ? "stopped by a signal" : "done", (unsigned long long)frame);
    fflush(stdout);
    free(buf);
    free(scene.rings);
    free(scene.colwave);
    free(scene.rowwave);
    if (stop_signal) {
        /* die of the signal, as the caller expects: a shell running us then
         * knows that Ctrl-C was meant for it too */
        signal(stop_signal, SIG_DFL);
        raise(stop_signal);
    }
    return 0;
}
