/* core/image.c - PNG / JPEG decoding like PIL's open().convert("RGB"), PNG
 * writing, and float -> u8 conversion (see omni/image.h for the rules).
 *
 * libpng and libjpeg report fatal errors through longjmp. Everything a
 * decoder touches after its setjmp lives in a heap "job" struct reached
 * through a pointer that never changes, so nothing is indeterminate after
 * the jump; the error handlers copy the library's message and never print.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include "omni/image.h"

static const uint8_t PNG_MAGIC[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Refuse empty and absurd sizes before anything is allocated. */
static int check_size(const char *name, const char *fmt, uint64_t w, uint64_t h,
                      struct omni_error *err)
{
    if (w == 0 || h == 0)
        return omni_error_set(err, OMNI_EFORMAT, "image '%s': %s header says %llux%llu pixels (empty image)",
                              name, fmt, (unsigned long long)w, (unsigned long long)h);
    if (w > OMNI_IMAGE_MAX_SIDE || h > OMNI_IMAGE_MAX_SIDE || w * h > (uint64_t)OMNI_IMAGE_MAX_PIXELS)
        return omni_error_set(err, OMNI_ERANGE,
                              "image '%s': %s header says %llux%llu pixels, over the limit of %d per side "
                              "and %lld pixels; refusing to decode it",
                              name, fmt, (unsigned long long)w, (unsigned long long)h, OMNI_IMAGE_MAX_SIDE,
                              (long long)OMNI_IMAGE_MAX_PIXELS);
    return OMNI_OK;
}

static int alloc_rgb(struct omni_tensor *out, uint64_t w, uint64_t h, struct omni_error *err)
{
    int64_t shape[3] = {(int64_t)h, (int64_t)w, 3};
    return omni_tensor_alloc(out, OMNI_DTYPE_U8, 3, shape, OMNI_CPU, err);
}

/* ---- PNG -------------------------------------------------------------------------- */

struct png_job {
    const uint8_t *data;
    size_t n, pos;
    char msg[256];
    uint8_t *pix;   /* decoded rows as libpng delivers them */
    png_bytep *rows;
    struct omni_tensor img;
};

static void png_read_cb(png_structp png, png_bytep dst, size_t len)
{
    struct png_job *j = png_get_io_ptr(png);
    if (len > j->n - j->pos)
        png_error(png, "file is truncated");
    memcpy(dst, j->data + j->pos, len);
    j->pos += len;
}

static void png_error_cb(png_structp png, png_const_charp msg)
{
    struct png_job *j = png_get_error_ptr(png);
    snprintf(j->msg, sizeof j->msg, "%s", msg ? msg : "libpng error");
    png_longjmp(png, 1);
}

static void png_warning_cb(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* PIL ignores what libpng only warns about; so do we */
}

/* Convert one decoded row to RGB. */
static void png_row_to_rgb(uint8_t *dst, const uint8_t *src, uint32_t w, int ctype, int depth,
                           const uint8_t pal[256][3])
{
    for (uint32_t x = 0; x < w; x++, dst += 3) {
        switch (ctype) {
        case PNG_COLOR_TYPE_GRAY:
            if (depth == 16) { /* PIL mode "I", convert("RGB") clips */
                unsigned v = (unsigned)src[2 * x] << 8 | src[2 * x + 1];
                dst[0] = dst[1] = dst[2] = (uint8_t)(v > 255 ? 255 : v);
            } else {
                dst[0] = dst[1] = dst[2] = src[x];
            }
            break;
        case PNG_COLOR_TYPE_GRAY_ALPHA: /* alpha dropped; 16-bit: high byte */
            dst[0] = dst[1] = dst[2] = depth == 16 ? src[4 * x] : src[2 * x];
            break;
        case PNG_COLOR_TYPE_RGB:
            for (int c = 0; c < 3; c++)
                dst[c] = depth == 16 ? src[6 * x + 2 * c] : src[3 * x + c];
            break;
        case PNG_COLOR_TYPE_RGB_ALPHA:
            for (int c = 0; c < 3; c++)
                dst[c] = depth == 16 ? src[8 * x + 2 * c] : src[4 * x + c];
            break;
        case PNG_COLOR_TYPE_PALETTE:
            memcpy(dst, pal[src[x]], 3);
            break;
        }
    }
}

static int decode_png(const uint8_t *data, size_t n, const char *name, struct omni_tensor *out,
                      struct omni_error *err)
{
    /* IHDR must come first: read the size ourselves so that both an empty
     * and an absurd image get our message before libpng allocates anything */
    if (n < 33 || memcmp(data + 12, "IHDR", 4) != 0)
        return omni_error_set(err, OMNI_EFORMAT, "image '%s': PNG is truncated or does not start with IHDR (%zu bytes)",
                              name, n);
    int rc = check_size(name, "PNG", be32(data + 16), be32(data + 20), err);
    if (rc)
        return rc;

    struct png_job *j = calloc(1, sizeof *j);
    if (!j)
        return omni_error_set(err, OMNI_ENOMEM, "image '%s': out of memory", name);
    j->data = data;
    j->n = n;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, j, png_error_cb, png_warning_cb);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
        free(j);
        return omni_error_set(err, OMNI_ENOMEM, "image '%s': out of memory (libpng)", name);
    }
    if (setjmp(png_jmpbuf(png))) {
        rc = omni_error_set(err, OMNI_EFORMAT, "image '%s': corrupt or truncated PNG: %s", name, j->msg);
        goto fail;
    }
    png_set_read_fn(png, j, png_read_cb);
    png_set_user_limits(png, OMNI_IMAGE_MAX_SIDE, OMNI_IMAGE_MAX_SIDE);
#ifdef PNG_CHECK_FOR_INVALID_INDEX_SUPPORTED
    png_set_check_for_invalid_index(png, -1); /* out-of-PLTE indices are PIL's gray ramp */
#endif
    png_read_info(png, info);
    png_uint_32 w, h;
    int depth, ctype, interlace;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    if ((rc = check_size(name, "PNG", w, h, err)))
        goto fail;

    uint8_t pal[256][3];
    for (int i = 0; i < 256; i++)
        pal[i][0] = pal[i][1] = pal[i][2] = (uint8_t)i;
    if (ctype == PNG_COLOR_TYPE_PALETTE) {
        png_colorp plte = NULL;
        int np = 0;
        if (!png_get_PLTE(png, info, &plte, &np)) {
            rc = omni_error_set(err, OMNI_EFORMAT, "image '%s': palette PNG without a PLTE chunk", name);
            goto fail;
        }
        for (int i = 0; i < np && i < 256; i++) {
            pal[i][0] = plte[i].red;
            pal[i][1] = plte[i].green;
            pal[i][2] = plte[i].blue;
        }
    }
    if (depth < 8) {
        if (ctype == PNG_COLOR_TYPE_GRAY)
            png_set_expand_gray_1_2_4_to_8(png); /* scales like PIL's "1", "L;2", "L;4" */
        else
            png_set_packing(png); /* one palette index per byte */
    }
    if (interlace != PNG_INTERLACE_NONE)
        png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    /* rows first (malloc'd, so pages are only touched as data arrives): a
     * header that promises a large image without the data to fill it fails
     * in png_read_image before the output tensor exists */
    j->pix = malloc(rowbytes * h);
    j->rows = malloc(sizeof *j->rows * h);
    if (!j->pix || !j->rows) {
        rc = omni_error_set(err, OMNI_ENOMEM, "image '%s': out of memory (%zu bytes of rows)", name,
                            rowbytes * h);
        goto fail;
    }
    for (png_uint_32 y = 0; y < h; y++)
        j->rows[y] = j->pix + y * rowbytes;
    png_read_image(png, j->rows);
    if ((rc = alloc_rgb(&j->img, w, h, err)))
        goto fail;

    uint8_t *dst = omni_tensor_data(&j->img);
    for (png_uint_32 y = 0; y < h; y++)
        png_row_to_rgb(dst + (size_t)y * w * 3, j->rows[y], w, ctype, depth, (const uint8_t(*)[3])pal);
    *out = j->img;
    memset(&j->img, 0, sizeof j->img);
    rc = OMNI_OK;
fail:
    png_destroy_read_struct(&png, &info, NULL);
    omni_tensor_release(&j->img);
    free(j->pix);
    free(j->rows);
    free(j);
    return rc;
}

/* ---- JPEG ------------------------------------------------------------------------- */

struct jpeg_job {
    struct jpeg_error_mgr pub; /* first: libjpeg hands us this pointer */
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
    int hit_eof;
    struct jpeg_decompress_struct cinfo;
    int created;
    uint8_t *row;
    uint8_t *rgb; /* (H, W, 3), malloc'd: pages are touched only as rows arrive */
    struct omni_tensor img;
};

static void jpeg_error_exit_cb(j_common_ptr c)
{
    struct jpeg_job *j = (struct jpeg_job *)c->err;
    c->err->format_message(c, j->msg);
    longjmp(j->jb, 1);
}

static void jpeg_emit_cb(j_common_ptr c, int level)
{
    struct jpeg_job *j = (struct jpeg_job *)c->err;
    if (level < 0) {
        /* PIL fails on a file that ends early ("image file is truncated");
         * libjpeg would only warn and pad with gray */
        if (c->err->msg_code == JWRN_JPEG_EOF)
            j->hit_eof = 1;
        c->err->num_warnings++;
    }
}

static void jpeg_output_cb(j_common_ptr c) { (void)c; /* never print */ }

static int decode_jpeg(const uint8_t *data, size_t n, const char *name, struct omni_tensor *out,
                       struct omni_error *err)
{
    int rc;
    struct jpeg_job *j = calloc(1, sizeof *j);
    if (!j)
        return omni_error_set(err, OMNI_ENOMEM, "image '%s': out of memory", name);
    j->cinfo.err = jpeg_std_error(&j->pub);
    j->pub.error_exit = jpeg_error_exit_cb;
    j->pub.emit_message = jpeg_emit_cb;
    j->pub.output_message = jpeg_output_cb;
    if (setjmp(j->jb)) {
        rc = omni_error_set(err, OMNI_EFORMAT, "image '%s': corrupt or truncated JPEG: %s", name, j->msg);
        goto fail;
    }
    jpeg_create_decompress(&j->cinfo);
    j->created = 1;
    jpeg_mem_src(&j->cinfo, data, (unsigned long)n);
    jpeg_read_header(&j->cinfo, TRUE);
    if (j->hit_eof) {
        rc = omni_error_set(err, OMNI_EFORMAT, "image '%s': JPEG is truncated (%zu bytes)", name, n);
        goto fail;
    }
    if ((rc = check_size(name, "JPEG", j->cinfo.image_width, j->cinfo.image_height, err)))
        goto fail;
    const int ncomp = j->cinfo.num_components;
    switch (ncomp) {
    case 1: j->cinfo.out_color_space = JCS_GRAYSCALE; break;
    case 3: j->cinfo.out_color_space = JCS_RGB; break;
    case 4: j->cinfo.out_color_space = JCS_CMYK; break; /* YCCK -> CMYK by libjpeg */
    default:
        rc = omni_error_set(err, OMNI_EUNSUPPORTED, "image '%s': JPEG with %d components is not supported (1, 3 or 4)",
                            name, ncomp);
        goto fail;
    }
    jpeg_start_decompress(&j->cinfo);
    const uint32_t w = j->cinfo.output_width, h = j->cinfo.output_height;
    if ((rc = check_size(name, "JPEG", w, h, err)))
        goto fail;
    /* Decode into plain malloc'd memory and make the (zero-filled) tensor only
     * once every row has arrived: a header promising a large image without
     * the data to fill it costs no memory. */
    j->row = malloc((size_t)w * (size_t)j->cinfo.output_components);
    j->rgb = malloc((size_t)w * h * 3);
    if (!j->row || !j->rgb) {
        rc = omni_error_set(err, OMNI_ENOMEM, "image '%s': out of memory (%ux%u pixels)", name, (unsigned)w,
                            (unsigned)h);
        goto fail;
    }
    uint8_t *dst = j->rgb;
    while (j->cinfo.output_scanline < h) {
        const uint32_t y = j->cinfo.output_scanline;
        JSAMPROW rp = j->row;
        if (jpeg_read_scanlines(&j->cinfo, &rp, 1) != 1)
            break;
        if (j->hit_eof)
            break;
        uint8_t *d = dst + (size_t)y * w * 3;
        const uint8_t *s = j->row;
        for (uint32_t x = 0; x < w; x++, d += 3) {
            if (ncomp == 1) {
                d[0] = d[1] = d[2] = s[x];
            } else if (ncomp == 3) {
                memcpy(d, s + 3 * x, 3);
            } else {
                /* PIL: rawmode "CMYK;I" (Adobe stores inverted ink), then
                 * cmyk2rgb: nk = 255 - k; out = nk - MULDIV255(c, nk). With the
                 * inversion, nk is the stored k byte. */
                const int nk = s[4 * x + 3];
                for (int c = 0; c < 3; c++) {
                    int t = (255 - s[4 * x + c]) * nk + 128;
                    int v = nk - (((t >> 8) + t) >> 8);
                    d[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
            }
        }
    }
    if (j->hit_eof || j->cinfo.output_scanline < h) {
        rc = omni_error_set(err, OMNI_EFORMAT, "image '%s': JPEG is truncated: data ends at row %u of %u",
                            name, (unsigned)j->cinfo.output_scanline, (unsigned)h);
        goto fail;
    }
    /* Trailing garbage or a missing EOI after complete image data is not an
     * error for PIL either: stop here instead of jpeg_finish_decompress. */
    if ((rc = alloc_rgb(&j->img, w, h, err)))
        goto fail;
    memcpy(omni_tensor_data(&j->img), j->rgb, (size_t)w * h * 3);
    *out = j->img;
    memset(&j->img, 0, sizeof j->img);
    rc = OMNI_OK;
fail:
    if (j->created)
        jpeg_destroy_decompress(&j->cinfo);
    omni_tensor_release(&j->img);
    free(j->row);
    free(j->rgb);
    free(j);
    return rc;
}

/* ---- entry points ----------------------------------------------------------------- */

int omni_image_decode(const void *data, size_t n, const char *name, struct omni_tensor *out,
                      struct omni_error *err)
{
    const uint8_t *p = data;
    if (out)
        memset(out, 0, sizeof *out);
    if (!name)
        name = "<memory>";
    if (!p || !out)
        return omni_error_set(err, OMNI_EINVAL, "omni_image_decode: NULL argument");
    if (n >= 8 && memcmp(p, PNG_MAGIC, 8) == 0)
        return decode_png(p, n, name, out, err);
    if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF)
        return decode_jpeg(p, n, name, out, err);
    if (n == 0)
        return omni_error_set(err, OMNI_EFORMAT, "image '%s' is empty (0 bytes)", name);
    char first[40] = "";
    for (size_t i = 0, used = 0; i < n && i < 8; i++)
        used += (size_t)snprintf(first + used, sizeof first - used, "%s%02x", i ? " " : "", p[i]);
    return omni_error_set(err, OMNI_EFORMAT,
                          "image '%s' is neither PNG nor JPEG (first bytes: %s); convert it to PNG or JPEG",
                          name, first);
}

int omni_image_load(const char *path, struct omni_tensor *out, struct omni_error *err)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!path || !out)
        return omni_error_set(err, OMNI_EINVAL, "omni_image_load: NULL argument");
    FILE *f = fopen(path, "rb");
    if (!f)
        return omni_error_set(err, errno == ENOENT ? OMNI_ENOTFOUND : OMNI_EIO, "cannot open image '%s': %s",
                              path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return omni_error_set(err, OMNI_EIO, "image '%s' is not a regular file", path);
    }
    if ((int64_t)st.st_size > OMNI_IMAGE_MAX_FILE_BYTES) {
        fclose(f);
        return omni_error_set(err, OMNI_ERANGE, "image '%s' is %lld bytes, over the limit of %lld", path,
                              (long long)st.st_size, (long long)OMNI_IMAGE_MAX_FILE_BYTES);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        return omni_error_set(err, OMNI_ENOMEM, "image '%s': out of memory (%zu bytes)", path, n);
    }
    size_t got = fread(buf, 1, n, f);
    int read_err = ferror(f);
    fclose(f);
    if (got != n || read_err) {
        free(buf);
        return omni_error_set(err, OMNI_EIO, "cannot read image '%s' (%zu of %zu bytes)", path, got, n);
    }
    int rc = omni_image_decode(buf, n, path, out, err);
    free(buf);
    return rc;
}

/* ---- writing ---------------------------------------------------------------------- */

void omni_image_grid_size(int64_t B, int64_t H, int64_t W, int64_t *grid_h, int64_t *grid_w)
{
    if (B <= 1) {
        *grid_h = H;
        *grid_w = W;
        return;
    }
    int64_t cols = 1;
    while (cols * cols < B)
        cols++;
    const int64_t rows = (B + cols - 1) / cols;
    *grid_h = rows * (H + 2) + 2;
    *grid_w = cols * (W + 2) + 2;
}

struct png_wjob {
    FILE *f;
    char msg[256];
    uint8_t *pix;
    png_bytep *rows;
};

static void png_werror_cb(png_structp png, png_const_charp msg)
{
    struct png_wjob *j = png_get_error_ptr(png);
    snprintf(j->msg, sizeof j->msg, "%s", msg ? msg : "libpng error");
    png_longjmp(png, 1);
}

int omni_image_save_png(const char *path, const struct omni_tensor *img, struct omni_error *err)
{
    char sb[96];
    if (!path || !img || !img->buf)
        return omni_error_set(err, OMNI_EINVAL, "omni_image_save_png: NULL path or image");
    if (img->dtype != OMNI_DTYPE_U8 || (img->ndim != 3 && img->ndim != 4) || img->shape[img->ndim - 1] != 3)
        return omni_error_set(err, OMNI_ESHAPE, "omni_image_save_png('%s'): image is %s, expected u8 [H,W,3] or [B,H,W,3]",
                              path, omni_tensor_str(img, sb, sizeof sb));
    if (img->device.type != OMNI_DEVICE_CPU)
        return omni_error_set(err, OMNI_EDEVICE, "omni_image_save_png('%s'): image is %s, expected a host tensor",
                              path, omni_tensor_str(img, sb, sizeof sb));
    const int b0 = img->ndim == 4;
    const int64_t B = b0 ? img->shape[0] : 1, H = img->shape[b0], W = img->shape[b0 + 1];
    const int64_t sB = b0 ? img->strides[0] : 0, sH = img->strides[b0], sW = img->strides[b0 + 1],
                  sC = img->strides[b0 + 2];
    int64_t GH, GW;
    omni_image_grid_size(B, H, W, &GH, &GW);
    if (B <= 0 || H <= 0 || W <= 0 || GH > 0x7fffffff / 4 || GW > 0x7fffffff / 4)
        return omni_error_set(err, OMNI_ESHAPE, "omni_image_save_png('%s'): cannot write an image of %s", path,
                              omni_tensor_str(img, sb, sizeof sb));

    struct png_wjob *j = calloc(1, sizeof *j);
    int rc = OMNI_OK;
    if (!j)
        return omni_error_set(err, OMNI_ENOMEM, "omni_image_save_png('%s'): out of memory", path);
    j->pix = calloc((size_t)(GH * GW * 3), 1);
    j->rows = malloc(sizeof *j->rows * (size_t)GH);
    if (!j->pix || !j->rows) {
        free(j->pix);
        free(j->rows);
        free(j);
        return omni_error_set(err, OMNI_ENOMEM, "omni_image_save_png('%s'): out of memory", path);
    }
    const uint8_t *src = omni_tensor_data(img);
    int64_t cols = 1;
    while (B > 1 && cols * cols < B)
        cols++;
    for (int64_t b = 0; b < B; b++) {
        const int64_t oy = B > 1 ? 2 + (b / cols) * (H + 2) : 0, ox = B > 1 ? 2 + (b % cols) * (W + 2) : 0;
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++)
                for (int c = 0; c < 3; c++)
                    j->pix[((oy + y) * GW + ox + x) * 3 + c] = src[b * sB + y * sH + x * sW + c * sC];
    }
    for (int64_t y = 0; y < GH; y++)
        j->rows[y] = j->pix + y * GW * 3;

    j->f = fopen(path, "wb");
    if (!j->f) {
        rc = omni_error_set(err, OMNI_EIO, "cannot create '%s': %s", path, strerror(errno));
        free(j->pix);
        free(j->rows);
        free(j);
        return rc;
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, j, png_werror_cb, png_warning_cb);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        rc = omni_error_set(err, OMNI_ENOMEM, "omni_image_save_png('%s'): out of memory (libpng)", path);
        goto done;
    }
    if (setjmp(png_jmpbuf(png))) {
        rc = omni_error_set(err, OMNI_EIO, "cannot write PNG '%s': %s", path, j->msg);
        goto done;
    }
    png_init_io(png, j->f);
    png_set_IHDR(png, info, (png_uint_32)GW, (png_uint_32)GH, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_write_image(png, j->rows);
    png_write_end(png, NULL);
done:
    if (png)
        png_destroy_write_struct(&png, info ? &info : NULL);
    if (fclose(j->f) != 0 && rc == OMNI_OK)
        rc = omni_error_set(err, OMNI_EIO, "cannot write PNG '%s': %s", path, strerror(errno));
    if (rc != OMNI_OK)
        unlink(path);
    free(j->pix);
    free(j->rows);
    free(j);
    return rc;
}

int omni_image_from_float(struct omni_tensor *out, const struct omni_tensor *in, float lo, float hi,
                          struct omni_error *err)
{
    char a[96], b[96];
    if (!out || !in || !in->buf || !out->buf)
        return omni_error_set(err, OMNI_EINVAL, "omni_image_from_float: NULL or empty tensor");
    if (in->dtype != OMNI_DTYPE_F32 || (in->ndim != 3 && in->ndim != 4) || in->shape[in->ndim - 3] != 3)
        return omni_error_set(err, OMNI_ESHAPE, "omni_image_from_float: in is %s, expected f32 [B,3,H,W] or [3,H,W]",
                              omni_tensor_str(in, a, sizeof a));
    const int b0 = in->ndim == 4;
    const int64_t B = b0 ? in->shape[0] : 1, H = in->shape[b0 + 1], W = in->shape[b0 + 2];
    const int64_t want[4] = {B, H, W, 3};
    int ok = out->dtype == OMNI_DTYPE_U8 && out->ndim == in->ndim && omni_tensor_is_contiguous(out);
    for (int d = 0; ok && d < out->ndim; d++)
        ok = out->shape[d] == want[d + !b0];
    if (!ok) {
        char c[96];
        return omni_error_set(err, OMNI_ESHAPE, "omni_image_from_float: out is %s, expected contiguous u8 %s for in %s",
                              omni_tensor_str(out, a, sizeof a), omni_shape_str(b0 ? 4 : 3, want + !b0, b, sizeof b),
                              omni_tensor_str(in, c, sizeof c));
    }
    if (in->device.type != OMNI_DEVICE_CPU || out->device.type != OMNI_DEVICE_CPU)
        return omni_error_set(err, OMNI_EDEVICE, "omni_image_from_float: tensors must be on the host (in %s, out %s)",
                              omni_tensor_str(in, a, sizeof a), omni_tensor_str(out, b, sizeof b));
    if (!(lo < hi))
        return omni_error_set(err, OMNI_EINVAL, "omni_image_from_float: value range [%g, %g] is empty", (double)lo,
                              (double)hi);
    const float *x = omni_tensor_data(in);
    uint8_t *y = omni_tensor_data(out);
    const int64_t sB = b0 ? in->strides[0] : 0, sC = in->strides[b0], sH = in->strides[b0 + 1],
                  sW = in->strides[b0 + 2];
    const float range = hi - lo; /* float32 like torch's div_ by a Python float */
    for (int64_t bb = 0; bb < B; bb++)
        for (int64_t yy = 0; yy < H; yy++)
            for (int64_t xx = 0; xx < W; xx++)
                for (int c = 0; c < 3; c++) {
                    float v = x[bb * sB + c * sC + yy * sH + xx * sW];
                    uint8_t p = 0;
                    if (v == v) { /* NaN -> 0 */
                        v = v < lo ? lo : v > hi ? hi : v;
                        float u = (v - lo) / range;
                        float s = u * 255.0f;
                        p = (uint8_t)s; /* truncation, as numpy astype(uint8) */
                    }
                    y[((bb * H + yy) * W + xx) * 3 + c] = p;
                }
    return OMNI_OK;
}
