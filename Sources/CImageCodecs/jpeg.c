// JPEG decoding through libjpeg-turbo with a longjmp error trap: libjpeg's default error handler
// prints to stderr and calls exit(), which would take the whole process down on one bad file.
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#include "CImageCodecs.h"

typedef struct {
    struct jpeg_error_mgr pub;  // must stay first: libjpeg hands us a pointer to it
    jmp_buf jump;
    int strict;
    int warnings;
    int status;
    int max_scans;
    char *message;
} trap;

typedef struct {
    struct jpeg_progress_mgr pub;
    trap *trap;
} scan_limit;

static void copy_message(char *message, const char *text) {
    snprintf(message, CATLIP_MESSAGE_LENGTH, "%s", text);
}

static void trap_error_exit(j_common_ptr cinfo) {
    trap *t = (trap *)cinfo->err;
    char text[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, text);
    if (t->status == CATLIP_OK) {
        t->status = CATLIP_ERROR_CORRUPT;
        if (cinfo->err->msg_code == JERR_OUT_OF_MEMORY) t->status = CATLIP_ERROR_OUT_OF_MEMORY;
        if (cinfo->err->msg_code == JERR_EMPTY_IMAGE) t->status = CATLIP_ERROR_EMPTY_IMAGE;
        if (cinfo->err->msg_code == JERR_INPUT_EOF || cinfo->err->msg_code == JERR_INPUT_EMPTY)
            t->status = CATLIP_ERROR_TRUNCATED;
        copy_message(t->message, text);
    }
    longjmp(t->jump, 1);
}

// Warnings (msg_level -1) are data defects libjpeg recovers from: a premature end of data
// (filled with grey), corrupt entropy data, extraneous bytes. Strict mode makes them errors.
static void trap_emit_message(j_common_ptr cinfo, int msg_level) {
    if (msg_level >= 0) return;  // trace messages
    trap *t = (trap *)cinfo->err;
    t->warnings += 1;
    if (!t->strict) return;
    char text[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, text);
    t->status = cinfo->err->msg_code == JWRN_JPEG_EOF ? CATLIP_ERROR_TRUNCATED
                                                      : CATLIP_ERROR_WARNING;
    copy_message(t->message, text);
    longjmp(t->jump, 1);
}

static void trap_output_message(j_common_ptr cinfo) { (void)cinfo; }

// A progressive file can hold thousands of tiny scans that take minutes to decode; libjpeg-turbo
// recommends bounding the scan count with a progress monitor.
static void scan_limit_progress(j_common_ptr cinfo) {
    scan_limit *limit = (scan_limit *)cinfo->progress;
    if (!cinfo->is_decompressor) return;
    j_decompress_ptr dinfo = (j_decompress_ptr)cinfo;
    if (dinfo->input_scan_number > limit->trap->max_scans) {
        trap *t = limit->trap;
        t->status = CATLIP_ERROR_CORRUPT;
        snprintf(t->message, CATLIP_MESSAGE_LENGTH, "more than %d progressive scans",
                 t->max_scans);
        longjmp(t->jump, 1);
    }
}

static void trap_init(trap *t, struct jpeg_decompress_struct *cinfo, scan_limit *limit,
                      int strict, int max_scans, char *message) {
    memset(t, 0, sizeof(*t));
    cinfo->err = jpeg_std_error(&t->pub);
    t->pub.error_exit = trap_error_exit;
    t->pub.emit_message = trap_emit_message;
    t->pub.output_message = trap_output_message;
    t->strict = strict;
    t->max_scans = max_scans > 0 ? max_scans : 1000;
    t->message = message;
    t->status = CATLIP_OK;
    memset(limit, 0, sizeof(*limit));
    limit->pub.progress_monitor = scan_limit_progress;
    limit->trap = t;
}

int catlip_jpeg_read_header(const uint8_t *data, size_t size, catlip_jpeg_header *header,
                            char *message) {
    struct jpeg_decompress_struct cinfo;
    trap t;
    scan_limit limit;
    message[0] = 0;
    memset(header, 0, sizeof(*header));
    trap_init(&t, &cinfo, &limit, 0, 0, message);
    if (setjmp(t.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return t.status;
    }
    jpeg_CreateDecompress(&cinfo, JPEG_LIB_VERSION, sizeof(cinfo));
    cinfo.progress = &limit.pub;
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    header->width = (int32_t)cinfo.image_width;
    header->height = (int32_t)cinfo.image_height;
    header->components = cinfo.num_components;
    header->color_space = cinfo.jpeg_color_space;
    header->progressive = cinfo.progressive_mode ? 1 : 0;
    header->adobe_inverted = cinfo.saw_Adobe_marker ? 1 : 0;
    jpeg_destroy_decompress(&cinfo);
    return CATLIP_OK;
}

void catlip_jpeg_scaled_size(int32_t width, int32_t height, int32_t scale_denom,
                             int32_t *scaled_width, int32_t *scaled_height) {
    int32_t d = scale_denom > 0 ? scale_denom : 1;
    *scaled_width = (width + d - 1) / d;
    *scaled_height = (height + d - 1) / d;
}

static inline uint8_t muldiv255(int a, int b) {
    int t = a * b + 128;
    return (uint8_t)(((t >> 8) + t) >> 8);
}

// CMYK to RGB as Pillow does it: R = (255 - K) - C * (255 - K) / 255 on ink values. Adobe
// files store inverted values (255 = no ink).
static void cmyk_row_to_rgb(uint8_t *out, const uint8_t *in, JDIMENSION width, int inverted) {
    for (JDIMENSION x = 0; x < width; x++) {
        int c = in[4 * x], m = in[4 * x + 1], y = in[4 * x + 2], k = in[4 * x + 3];
        if (inverted) {
            c = 255 - c;
            m = 255 - m;
            y = 255 - y;
            k = 255 - k;
        }
        int nk = 255 - k;
        out[3 * x] = (uint8_t)(nk - muldiv255(c, nk));
        out[3 * x + 1] = (uint8_t)(nk - muldiv255(m, nk));
        out[3 * x + 2] = (uint8_t)(nk - muldiv255(y, nk));
    }
}

int catlip_jpeg_decode(const uint8_t *data, size_t size, const catlip_jpeg_request *request,
                       int64_t max_pixels, uint8_t *out, size_t out_capacity,
                       catlip_jpeg_result *result, char *message) {
    struct jpeg_decompress_struct cinfo;
    trap t;
    scan_limit limit;
    message[0] = 0;
    memset(result, 0, sizeof(*result));
    trap_init(&t, &cinfo, &limit, request->strict, request->max_scans, message);
    if (setjmp(t.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return t.status;
    }
    jpeg_CreateDecompress(&cinfo, JPEG_LIB_VERSION, sizeof(cinfo));
    cinfo.progress = &limit.pub;
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);

    if (cinfo.image_width == 0 || cinfo.image_height == 0) {
        copy_message(message, "image has zero width or height");
        jpeg_destroy_decompress(&cinfo);
        return CATLIP_ERROR_EMPTY_IMAGE;
    }
    int64_t pixels = (int64_t)cinfo.image_width * (int64_t)cinfo.image_height;
    if (pixels > max_pixels) {
        snprintf(message, CATLIP_MESSAGE_LENGTH,
                 "image is %ux%u (%lld pixels), over the limit of %lld pixels",
                 cinfo.image_width, cinfo.image_height, (long long)pixels,
                 (long long)max_pixels);
        jpeg_destroy_decompress(&cinfo);
        return CATLIP_ERROR_TOO_LARGE;
    }

    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    // CMYK JPEGs in the wild are Adobe's, with inverted values, whether or not the APP14 marker
    // survived; Pillow assumes the same for every CMYK JPEG.
    int inverted = cmyk;
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    int denom = request->scale_denom;
    if (denom != 1 && denom != 2 && denom != 4 && denom != 8) denom = 1;
    cinfo.scale_num = 1;
    cinfo.scale_denom = (unsigned int)denom;
    jpeg_start_decompress(&cinfo);

    JDIMENSION ow = cinfo.output_width, oh = cinfo.output_height;
    result->scaled_width = (int32_t)ow;
    result->scaled_height = (int32_t)oh;
    if (request->x < 0 || request->y < 0 || (JDIMENSION)request->x >= ow ||
        (JDIMENSION)request->y >= oh || request->width < 0 || request->height < 0) {
        snprintf(message, CATLIP_MESSAGE_LENGTH, "region (%d, %d) outside the %ux%u image",
                 request->x, request->y, ow, oh);
        jpeg_destroy_decompress(&cinfo);
        return CATLIP_ERROR_UNSUPPORTED;
    }
    JDIMENSION x0 = (JDIMENSION)request->x, y0 = (JDIMENSION)request->y;
    JDIMENSION w = request->width > 0 ? (JDIMENSION)request->width : ow - x0;
    JDIMENSION h = request->height > 0 ? (JDIMENSION)request->height : oh - y0;
    if (w > ow - x0) w = ow - x0;
    if (h > oh - y0) h = oh - y0;
    if (x0 > 0 || w < ow) jpeg_crop_scanline(&cinfo, &x0, &w);  // widens to iMCU columns
    if ((size_t)h * (size_t)w * 3 > out_capacity) {
        copy_message(message, "output buffer too small");
        jpeg_destroy_decompress(&cinfo);
        return CATLIP_ERROR_UNSUPPORTED;
    }
    result->x = (int32_t)x0;
    result->y = (int32_t)y0;
    result->width = (int32_t)w;
    result->height = (int32_t)h;

    JSAMPARRAY cmyk_row = NULL;
    if (cmyk) cmyk_row = (*cinfo.mem->alloc_sarray)((j_common_ptr)&cinfo, JPOOL_IMAGE, w * 4, 1);
    if (y0 > 0) jpeg_skip_scanlines(&cinfo, y0);
    for (JDIMENSION row = 0; row < h; row++) {
        uint8_t *dest = out + (size_t)row * w * 3;
        if (cmyk) {
            jpeg_read_scanlines(&cinfo, cmyk_row, 1);
            cmyk_row_to_rgb(dest, cmyk_row[0], w, inverted);
        } else {
            JSAMPROW rows[1] = {dest};
            jpeg_read_scanlines(&cinfo, rows, 1);
        }
    }
    // Reading to the end checks the rest of the data; a region that stops early need not.
    if (cinfo.output_scanline >= cinfo.output_height) {
        jpeg_finish_decompress(&cinfo);
    } else {
        jpeg_abort_decompress(&cinfo);
    }
    result->warnings = t.warnings;
    jpeg_destroy_decompress(&cinfo);
    return CATLIP_OK;
}
