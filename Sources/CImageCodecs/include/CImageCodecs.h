// CImageCodecs: the C layer under Imaging. libjpeg and libpng report fatal errors by longjmp
// (libjpeg's default handler even calls exit()), and Swift cannot call setjmp, so every call into
// those libraries that can fail goes through these functions. Each returns 0 on success or a
// nonzero status with a human-readable message in the caller's buffer; none prints to stderr.
// All state lives on the caller's stack or in the handle: the functions are thread-safe.
#ifndef CATLIP_IMAGE_CODECS_H
#define CATLIP_IMAGE_CODECS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Length of the message buffers passed to every function here.
#define CATLIP_MESSAGE_LENGTH 256

/// Status codes shared by the JPEG and PNG functions.
enum {
    CATLIP_OK = 0,
    CATLIP_ERROR_CORRUPT = 1,      ///< the library rejected the data
    CATLIP_ERROR_TRUNCATED = 2,    ///< the data ended early
    CATLIP_ERROR_TOO_LARGE = 3,    ///< width * height over the caller's pixel limit
    CATLIP_ERROR_EMPTY_IMAGE = 4,  ///< zero width or height
    CATLIP_ERROR_UNSUPPORTED = 5,  ///< a valid file in a variant we do not decode
    CATLIP_ERROR_OUT_OF_MEMORY = 6,
    CATLIP_ERROR_WARNING = 7,      ///< a recoverable defect, fatal in strict mode
};

/// What a JPEG header says, before any pixel is decoded.
typedef struct {
    int32_t width;           ///< full-size width in pixels
    int32_t height;          ///< full-size height in pixels
    int32_t components;      ///< components in the file: 1 (grey), 3 (YCbCr/RGB) or 4 (CMYK/YCCK)
    int32_t color_space;     ///< libjpeg's J_COLOR_SPACE of the file
    int32_t progressive;     ///< 1 for progressive (multi-scan) files
    int32_t adobe_inverted;  ///< 1 when an Adobe APP14 marker was seen
} catlip_jpeg_header;

/// A region of the scaled output to decode. Columns may be widened by the library to iMCU
/// boundaries; `catlip_jpeg_decode` reports the columns it actually produced.
typedef struct {
    int32_t scale_denom;  ///< 1, 2, 4 or 8: DCT-domain reduction
    int32_t x;            ///< first column wanted, in scaled pixels
    int32_t y;            ///< first row wanted, in scaled pixels
    int32_t width;        ///< columns wanted (0 = to the right edge)
    int32_t height;       ///< rows wanted (0 = to the bottom edge)
    int32_t strict;       ///< 1: library warnings (truncation, corrupt data) are errors
    int32_t max_scans;    ///< progressive scans allowed before giving up (0 = 1000)
} catlip_jpeg_request;

/// What `catlip_jpeg_decode` produced: `width` x `height` RGB8 pixels, rows packed, whose top-left
/// pixel is at (`x`, `y`) of the scaled image of size `scaled_width` x `scaled_height`.
typedef struct {
    int32_t scaled_width;
    int32_t scaled_height;
    int32_t x;
    int32_t y;
    int32_t width;
    int32_t height;
    int32_t warnings;  ///< library warnings seen (always 0 in strict mode)
} catlip_jpeg_result;

/// Reads the JPEG header of `data`.
int catlip_jpeg_read_header(const uint8_t *data, size_t size, catlip_jpeg_header *header,
                            char *message);

/// Size of the scaled image for a reduction of 1/`scale_denom` (libjpeg's rounding: up).
void catlip_jpeg_scaled_size(int32_t width, int32_t height, int32_t scale_denom,
                             int32_t *scaled_width, int32_t *scaled_height);

/// Decodes `request`'s region of `data` to RGB8 into `out`, which must hold
/// `out_capacity` bytes; at least (region height) * (scaled width) * 3 is always enough.
/// Refuses images of more than `max_pixels` full-size pixels before allocating anything.
int catlip_jpeg_decode(const uint8_t *data, size_t size, const catlip_jpeg_request *request,
                       int64_t max_pixels, uint8_t *out, size_t out_capacity,
                       catlip_jpeg_result *result, char *message);

/// What a PNG header says.
typedef struct {
    int32_t width;
    int32_t height;
    int32_t bit_depth;   ///< 1, 2, 4, 8 or 16
    int32_t color_type;  ///< PNG colour type: 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA
    int32_t interlaced;  ///< 1 for Adam7
    int32_t has_alpha;   ///< 1 when an alpha channel or tRNS transparency is present
} catlip_png_header;

/// Reads the PNG header (through IHDR and the chunks before the image data).
int catlip_png_read_header(const uint8_t *data, size_t size, catlip_png_header *header,
                           char *message);

/// Decodes `data` to RGB8 (`width` * `height` * 3 bytes in `out`), compositing any transparency
/// onto `background` (3 bytes, RGB8) and reducing 16-bit samples with rounding. Refuses images
/// of more than `max_pixels` pixels before allocating anything.
int catlip_png_decode(const uint8_t *data, size_t size, const uint8_t *background,
                      int64_t max_pixels, uint8_t *out, size_t out_capacity, char *message);

/// Encodes RGB8 pixels as a PNG in memory. On success `*png` is a malloc'd buffer of `*png_size`
/// bytes that the caller frees with `catlip_free`.
int catlip_png_encode_rgb(const uint8_t *pixels, int32_t width, int32_t height, uint8_t **png,
                          size_t *png_size, char *message);

/// Frees a buffer returned by this library.
void catlip_free(void *pointer);

#ifdef __cplusplus
}
#endif

#endif
