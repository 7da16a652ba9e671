// PNG decoding through libpng's full API with a longjmp error trap. The simplified API would need
// no trap, but it treats 16-bit data as linear light and composites alpha in linear space, which
// brightens 16-bit images on reduction; here 16-bit samples are scaled to 8 bits with rounding
// and alpha is composited on the stored values, as Pillow and torchvision users expect.
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "CImageCodecs.h"

typedef struct {
    jmp_buf jump;
    char *message;
    int status;
    const uint8_t *data;
    size_t size;
    size_t position;
    uint8_t *buffer;        // freed on every exit path
    png_bytep *row_pointers;  // likewise
} png_trap;

static void png_trap_error(png_structp png, png_const_charp text) {
    png_trap *t = (png_trap *)png_get_error_ptr(png);
    if (t->status == CATLIP_OK) {
        t->status = CATLIP_ERROR_CORRUPT;
        snprintf(t->message, CATLIP_MESSAGE_LENGTH, "%s", text);
    }
    longjmp(t->jump, 1);
}

// Warnings are about ancillary data (colour profiles, text chunks); they never change pixels.
static void png_trap_warning(png_structp png, png_const_charp text) {
    (void)png;
    (void)text;
}

static void png_trap_read(png_structp png, png_bytep out, size_t count) {
    png_trap *t = (png_trap *)png_get_io_ptr(png);
    if (t->size - t->position < count) {
        t->status = CATLIP_ERROR_TRUNCATED;
        snprintf(t->message, CATLIP_MESSAGE_LENGTH, "data ends early (%zu bytes)", t->size);
        png_error(png, "truncated");
    }
    memcpy(out, t->data + t->position, count);
    t->position += count;
}

static void png_trap_init(png_trap *t, const uint8_t *data, size_t size, char *message) {
    memset(t, 0, sizeof(*t));
    t->message = message;
    t->data = data;
    t->size = size;
    message[0] = 0;
}

static int png_trap_finish(png_trap *t, png_structp *png, png_infop *info) {
    png_destroy_read_struct(png, info, NULL);
    free(t->buffer);
    free(t->row_pointers);
    t->buffer = NULL;
    t->row_pointers = NULL;
    return t->status;
}

static int png_open(png_trap *t, png_structp *png, png_infop *info) {
    if (t->size < 8 || png_sig_cmp((png_const_bytep)t->data, 0, 8) != 0) {
        snprintf(t->message, CATLIP_MESSAGE_LENGTH, "not a PNG signature");
        return CATLIP_ERROR_CORRUPT;
    }
    // libpng rejects a zero size as "Invalid IHDR data"; say what is wrong instead.
    if (t->size >= 24 && memcmp(t->data + 12, "IHDR", 4) == 0) {
        const uint8_t *d = t->data + 16;
        uint32_t w = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
        uint32_t h = (uint32_t)d[4] << 24 | (uint32_t)d[5] << 16 | (uint32_t)d[6] << 8 | d[7];
        if (w == 0 || h == 0) {
            snprintf(t->message, CATLIP_MESSAGE_LENGTH, "image has zero width or height");
            return CATLIP_ERROR_EMPTY_IMAGE;
        }
    }
    *png = png_create_read_struct(PNG_LIBPNG_VER_STRING, t, png_trap_error, png_trap_warning);
    if (*png == NULL) {
        snprintf(t->message, CATLIP_MESSAGE_LENGTH, "out of memory");
        return CATLIP_ERROR_OUT_OF_MEMORY;
    }
    *info = png_create_info_struct(*png);
    if (*info == NULL) {
        png_destroy_read_struct(png, NULL, NULL);
        snprintf(t->message, CATLIP_MESSAGE_LENGTH, "out of memory");
        return CATLIP_ERROR_OUT_OF_MEMORY;
    }
    png_set_read_fn(*png, t, png_trap_read);
    // The pixel limit is ours to check (width * height); lift libpng's per-side limit of 1e6.
    png_set_user_limits(*png, 0x7fffffff, 0x7fffffff);
    return CATLIP_OK;
}

static void fill_header(png_structp png, png_infop info, catlip_png_header *header) {
    header->width = (int32_t)png_get_image_width(png, info);
    header->height = (int32_t)png_get_image_height(png, info);
    header->bit_depth = png_get_bit_depth(png, info);
    header->color_type = png_get_color_type(png, info);
    header->interlaced = png_get_interlace_type(png, info) != PNG_INTERLACE_NONE;
    header->has_alpha = (header->color_type & PNG_COLOR_MASK_ALPHA) != 0 ||
                        png_get_valid(png, info, PNG_INFO_tRNS) != 0;
}

int catlip_png_read_header(const uint8_t *data, size_t size, catlip_png_header *header,
                           char *message) {
    png_trap t;
    png_structp png = NULL;
    png_infop info = NULL;
    memset(header, 0, sizeof(*header));
    png_trap_init(&t, data, size, message);
    int status = png_open(&t, &png, &info);
    if (status != CATLIP_OK) return status;
    if (setjmp(t.jump)) return png_trap_finish(&t, &png, &info);
    png_read_info(png, info);
    fill_header(png, info, header);
    return png_trap_finish(&t, &png, &info);
}

// One row of 8-bit RGB or RGBA to RGB8 over the background.
static void composite_row8(uint8_t *out, const uint8_t *in, uint32_t width, int channels,
                           const uint8_t *bg) {
    if (channels == 3) {
        memcpy(out, in, (size_t)width * 3);
        return;
    }
    for (uint32_t x = 0; x < width; x++) {
        const uint8_t *p = in + 4 * (size_t)x;
        uint32_t a = p[3];
        for (int c = 0; c < 3; c++) {
            out[3 * (size_t)x + c] = (uint8_t)((p[c] * a + bg[c] * (255 - a) + 127) / 255);
        }
    }
}

// One row of 16-bit (big-endian) RGBA to RGB8: composite at 16 bits, then round to 8.
static void composite_row16(uint8_t *out, const uint8_t *in, uint32_t width, const uint8_t *bg) {
    for (uint32_t x = 0; x < width; x++) {
        const uint8_t *p = in + 8 * (size_t)x;
        uint64_t a = ((uint64_t)p[6] << 8) | p[7];
        for (int c = 0; c < 3; c++) {
            uint64_t v = ((uint64_t)p[2 * c] << 8) | p[2 * c + 1];
            uint64_t b = (uint64_t)bg[c] * 257;
            uint64_t v16 = (v * a + b * (65535 - a) + 32767) / 65535;
            out[3 * (size_t)x + c] = (uint8_t)((v16 * 255 + 32767) / 65535);
        }
    }
}

int catlip_png_decode(const uint8_t *data, size_t size, const uint8_t *background,
                      int64_t max_pixels, uint8_t *out, size_t out_capacity, char *message) {
    png_trap t;
    png_structp png = NULL;
    png_infop info = NULL;
    png_trap_init(&t, data, size, message);
    int status = png_open(&t, &png, &info);
    if (status != CATLIP_OK) return status;
    if (setjmp(t.jump)) return png_trap_finish(&t, &png, &info);
    png_read_info(png, info);
    catlip_png_header header;
    fill_header(png, info, &header);
    uint32_t width = (uint32_t)header.width, height = (uint32_t)header.height;
    if (width == 0 || height == 0) {
        t.status = CATLIP_ERROR_EMPTY_IMAGE;
        snprintf(message, CATLIP_MESSAGE_LENGTH, "image has zero width or height");
        return png_trap_finish(&t, &png, &info);
    }
    int64_t pixels = (int64_t)width * (int64_t)height;
    if (pixels > max_pixels) {
        t.status = CATLIP_ERROR_TOO_LARGE;
        snprintf(message, CATLIP_MESSAGE_LENGTH,
                 "image is %ux%u (%lld pixels), over the limit of %lld pixels", width, height,
                 (long long)pixels, (long long)max_pixels);
        return png_trap_finish(&t, &png, &info);
    }
    if ((size_t)pixels * 3 > out_capacity) {
        t.status = CATLIP_ERROR_UNSUPPORTED;
        snprintf(message, CATLIP_MESSAGE_LENGTH, "output buffer too small");
        return png_trap_finish(&t, &png, &info);
    }

    int color_type = header.color_type;
    int has_trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && header.bit_depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (has_trns) png_set_tRNS_to_alpha(png);
    if ((color_type & PNG_COLOR_MASK_COLOR) == 0) png_set_gray_to_rgb(png);
    int alpha = header.has_alpha;
    if (header.bit_depth == 16 && !alpha) png_set_scale_16(png);
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);

    int channels = png_get_channels(png, info);
    int depth = png_get_bit_depth(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (channels != (alpha ? 4 : 3) || (depth != 8 && depth != 16) ||
        rowbytes != (size_t)width * (size_t)channels * (size_t)(depth / 8)) {
        t.status = CATLIP_ERROR_UNSUPPORTED;
        snprintf(message, CATLIP_MESSAGE_LENGTH, "unexpected PNG layout (%d channels, %d bits)",
                 channels, depth);
        return png_trap_finish(&t, &png, &info);
    }

    if (!alpha) {
        // RGB8 rows straight into the output.
        t.row_pointers = (png_bytep *)malloc(sizeof(png_bytep) * height);
        if (t.row_pointers == NULL) png_error(png, "out of memory");
        for (uint32_t y = 0; y < height; y++) t.row_pointers[y] = out + (size_t)y * width * 3;
        png_read_image(png, t.row_pointers);
    } else if (passes > 1) {
        // Adam7 with alpha: the passes fill the whole image before it can be composited.
        t.buffer = (uint8_t *)malloc(rowbytes * height);
        t.row_pointers = (png_bytep *)malloc(sizeof(png_bytep) * height);
        if (t.buffer == NULL || t.row_pointers == NULL) png_error(png, "out of memory");
        for (uint32_t y = 0; y < height; y++) t.row_pointers[y] = t.buffer + (size_t)y * rowbytes;
        png_read_image(png, t.row_pointers);
        for (uint32_t y = 0; y < height; y++) {
            uint8_t *dest = out + (size_t)y * width * 3;
            if (depth == 16) composite_row16(dest, t.row_pointers[y], width, background);
            else composite_row8(dest, t.row_pointers[y], width, 4, background);
        }
    } else {
        t.buffer = (uint8_t *)malloc(rowbytes);
        if (t.buffer == NULL) png_error(png, "out of memory");
        for (uint32_t y = 0; y < height; y++) {
            png_read_row(png, t.buffer, NULL);
            uint8_t *dest = out + (size_t)y * width * 3;
            if (depth == 16) composite_row16(dest, t.buffer, width, background);
            else composite_row8(dest, t.buffer, width, 4, background);
        }
    }
    return png_trap_finish(&t, &png, &info);
}

int catlip_png_encode_rgb(const uint8_t *pixels, int32_t width, int32_t height, uint8_t **png,
                          size_t *png_size, char *message) {
    png_image image;
    message[0] = 0;
    *png = NULL;
    *png_size = 0;
    memset(&image, 0, sizeof(image));
    image.version = PNG_IMAGE_VERSION;
    image.width = (png_uint_32)width;
    image.height = (png_uint_32)height;
    image.format = PNG_FORMAT_RGB;
    png_alloc_size_t size = 0;
    if (!png_image_write_to_memory(&image, NULL, &size, 0, pixels, 0, NULL)) {
        snprintf(message, CATLIP_MESSAGE_LENGTH, "%s", image.message);
        png_image_free(&image);
        return CATLIP_ERROR_CORRUPT;
    }
    uint8_t *buffer = (uint8_t *)malloc(size);
    if (buffer == NULL) {
        snprintf(message, CATLIP_MESSAGE_LENGTH, "out of memory");
        return CATLIP_ERROR_OUT_OF_MEMORY;
    }
    if (!png_image_write_to_memory(&image, buffer, &size, 0, pixels, 0, NULL)) {
        snprintf(message, CATLIP_MESSAGE_LENGTH, "%s", image.message);
        png_image_free(&image);
        free(buffer);
        return CATLIP_ERROR_CORRUPT;
    }
    *png = buffer;
    *png_size = size;
    return CATLIP_OK;
}

void catlip_free(void *pointer) { free(pointer); }
