/* npy.c: see npy.h. Only what edgecc-run needs: no pickles, no Fortran order, no big-endian data. */
#define _XOPEN_SOURCE 700
#include "npy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct { const char *descr, *dtype; } DTYPES[] = {
    {"<f4", "float32"}, {"<f8", "float64"}, {"<f2", "float16"}, {"<i8", "int64"}, {"<i4", "int32"},
    {"<i2", "int16"},   {"|i1", "int8"},    {"<u8", "uint64"},  {"<u4", "uint32"}, {"<u2", "uint16"},
    {"|u1", "uint8"},   {"|b1", "bool"},
};

static int failf(char *error, size_t size, const char *format, ...) {
  va_list args;
  va_start(args, format);
  vsnprintf(error, size, format, args);
  va_end(args);
  return -1;
}

static const char *dtype_of(const char *descr) {
  for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; ++i)
    if (strcmp(DTYPES[i].descr, descr) == 0) return DTYPES[i].dtype;
  return NULL;
}

static const char *descr_of(const char *dtype) {
  for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; ++i)
    if (strcmp(DTYPES[i].dtype, dtype) == 0) return DTYPES[i].descr;
  return NULL;
}

static size_t item_size(const char *descr) { return (size_t)atoi(descr + 2); }

/* The value after 'key': in the header dict, or NULL. */
static const char *after_key(const char *header, const char *key) {
  const char *at = strstr(header, key);
  if (!at) return NULL;
  at = strchr(at + strlen(key), ':');
  if (!at) return NULL;
  for (++at; *at == ' '; ++at) {}
  return at;
}

static int parse_header(const char *header, const char *path, npy_array *out, const char **descr_out, char *error,
                        size_t size) {
  static char descr[16];
  const char *value = after_key(header, "'descr'");
  if (!value || (*value != '\'' && *value != '"')) return failf(error, size, "%s: .npy header has no descr", path);
  const char *end = strchr(value + 1, *value);
  if (!end || end - value - 1 >= (long)sizeof descr) return failf(error, size, "%s: bad descr in .npy header", path);
  memcpy(descr, value + 1, (size_t)(end - value - 1));
  descr[end - value - 1] = 0;
  if (descr[0] == '=') descr[0] = '<';
  const char *dtype = dtype_of(descr);
  if (!dtype) return failf(error, size, "%s: element type '%s' is not supported (little-endian numbers only)", path, descr);
  value = after_key(header, "'fortran_order'");
  if (!value || strncmp(value, "False", 5) != 0)
    return failf(error, size, "%s: Fortran-order arrays are not supported; save with np.ascontiguousarray", path);
  value = after_key(header, "'shape'");
  if (!value || *value != '(') return failf(error, size, "%s: .npy header has no shape", path);
  out->ndim = 0;
  for (const char *p = value + 1; *p && *p != ')';) {
    while (*p == ' ' || *p == ',') ++p;
    if (*p == ')') break;
    char *next = NULL;
    errno = 0;
    long long dim = strtoll(p, &next, 10);
    if (next == p || errno || dim < 0 || out->ndim >= NPY_MAX_DIMS)
      return failf(error, size, "%s: bad shape in .npy header", path);
    out->shape[out->ndim++] = dim;
    p = next;
  }
  snprintf(out->dtype, sizeof out->dtype, "%s", dtype);
  *descr_out = descr;
  return 0;
}

int npy_read(const char *path, npy_array *out, char *error, size_t size) {
  memset(out, 0, sizeof *out);
  FILE *file = fopen(path, "rb");
  if (!file) return failf(error, size, "cannot open %s: %s", path, strerror(errno));
  unsigned char magic[8];
  int status = -1;
  char *header = NULL;
  if (fread(magic, 1, 8, file) != 8 || memcmp(magic, "\x93NUMPY", 6) != 0) {
    failf(error, size, "%s is not a .npy file (save it with numpy.save)", path);
    goto done;
  }
  unsigned char length_bytes[4] = {0};
  size_t length_size = magic[6] == 1 ? 2 : 4;
  if (magic[6] < 1 || magic[6] > 3 || fread(length_bytes, 1, length_size, file) != length_size) {
    failf(error, size, "%s: unsupported .npy version %d", path, magic[6]);
    goto done;
  }
  size_t header_length = length_bytes[0] | (length_bytes[1] << 8) | ((size_t)length_bytes[2] << 16) |
                         ((size_t)length_bytes[3] << 24);
  if (header_length > 1 << 20 || !(header = calloc(header_length + 1, 1)) ||
      fread(header, 1, header_length, file) != header_length) {
    failf(error, size, "%s: truncated .npy header", path);
    goto done;
  }
  const char *descr = NULL;
  if (parse_header(header, path, out, &descr, error, size) != 0) goto done;
  size_t count = 1;
  for (int i = 0; i < out->ndim; ++i) count *= (size_t)out->shape[i];
  out->nbytes = count * item_size(descr);
  out->data = malloc(out->nbytes ? out->nbytes : 1);
  if (!out->data) {
    failf(error, size, "%s: out of memory for %zu bytes", path, out->nbytes);
    goto done;
  }
  if (fread(out->data, 1, out->nbytes, file) != out->nbytes) {
    failf(error, size, "%s: file is shorter than its header says (%zu bytes of data expected)", path, out->nbytes);
    goto done;
  }
  status = 0;
done:
  free(header);
  fclose(file);
  if (status != 0) npy_free(out);
  return status;
}

/* Every byte, or -1 with errno set (a short write is continued; EFBIG and ENOSPC end it). */
static int write_all(int fd, const void *data, size_t size) {
  const char *at = data;
  while (size > 0) {
    ssize_t n = write(fd, at, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (n == 0) {
      errno = EIO;
      return -1;
    }
    at += n;
    size -= (size_t)n;
  }
  return 0;
}

int npy_stage(const char *folder, const char *dtype, int ndim, const int64_t *shape, const void *data, size_t nbytes,
              char *staged, size_t staged_size, char *error, size_t size) {
  const char *descr = descr_of(dtype);
  staged[0] = 0;
  if (!descr) return failf(error, size, "cannot write an output to %s: dtype %s has no .npy equivalent", folder, dtype);
  char header[512], dims[400] = "";
  size_t used = 0;
  for (int i = 0; i < ndim && used < sizeof dims - 24; ++i)
    used += (size_t)snprintf(dims + used, sizeof dims - used, "%lld%s", (long long)shape[i], ndim == 1 ? "," : (i + 1 < ndim ? ", " : ""));
  int length = snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, dims);
  int padded = ((10 + length + 1 + 63) / 64) * 64 - 10; /* header incl. newline, data 64-byte aligned */
  memset(header + length, ' ', (size_t)(padded - length - 1));
  header[padded - 1] = '\n';
  unsigned char preamble[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(padded & 0xff),
                                (unsigned char)(padded >> 8)};
  if ((size_t)snprintf(staged, staged_size, "%s/.edgecc-run-XXXXXX", folder) >= staged_size) {
    staged[0] = 0;
    return failf(error, size, "cannot write an output to %s: the folder's path is too long", folder);
  }
  int fd = mkstemp(staged);
  if (fd < 0) {
    int why = errno;
    staged[0] = 0;
    return failf(error, size, "cannot write an output to %s: %s", folder, strerror(why));
  }
  mode_t mask = umask(0); /* mkstemp makes 0600; an output gets what a plain create would give it */
  umask(mask);
  int ok = fchmod(fd, 0666 & ~mask) == 0 && write_all(fd, preamble, sizeof preamble) == 0 &&
           write_all(fd, header, (size_t)padded) == 0 && write_all(fd, data, nbytes) == 0 && fsync(fd) == 0;
  int why = errno;
  if (close(fd) != 0 && ok) {
    ok = 0;
    why = errno;
  }
  if (!ok) {
    unlink(staged);
    staged[0] = 0;
    return failf(error, size, "cannot write an output to %s: %s (nothing was replaced)", folder, strerror(why));
  }
  return 0;
}

int npy_commit(const char *staged, const char *path, char *error, size_t size) {
  if (rename(staged, path) != 0) {
    int why = errno;
    unlink(staged);
    return failf(error, size, "cannot write %s: %s", path, strerror(why));
  }
  return 0;
}

void npy_discard(const char *staged) {
  if (staged && staged[0]) unlink(staged);
}

int npy_write(const char *path, const char *dtype, int ndim, const int64_t *shape, const void *data, size_t nbytes,
              char *error, size_t size) {
  char folder[4096], staged[4096];
  const char *slash = strrchr(path, '/');
  if (!slash) {
    snprintf(folder, sizeof folder, ".");
  } else if ((size_t)(slash - path) < sizeof folder) {
    memcpy(folder, path, (size_t)(slash - path));
    folder[slash == path ? 1 : slash - path] = 0;
    if (slash == path) folder[0] = '/';
  } else {
    return failf(error, size, "cannot write %s: the path is too long", path);
  }
  if (npy_stage(folder, dtype, ndim, shape, data, nbytes, staged, sizeof staged, error, size) != 0) return -1;
  return npy_commit(staged, path, error, size);
}

void npy_free(npy_array *array) {
  free(array->data);
  array->data = NULL;
}
