/* npy.h: read and write NumPy .npy files (format 1.0-3.0, little-endian, C order) in plain C. */
#ifndef EDGECC_NPY_H_
#define EDGECC_NPY_H_

#include <stddef.h>
#include <stdint.h>

#define NPY_MAX_DIMS 16

typedef struct npy_array {
  char dtype[16];  /* "float32", "int64", ... (edgecc's names) */
  int ndim;
  int64_t shape[NPY_MAX_DIMS];
  void *data;
  size_t nbytes;
} npy_array;

/* 0 on success; otherwise -1 and a one-line reason in `error` (error_size bytes). */
int npy_read(const char *path, npy_array *out, char *error, size_t error_size);

/* Writing never leaves a half-written .npy under its final name: npy_stage writes the array to a new
 * temporary file in `folder` (its name goes to `staged`), checks every write, fsyncs and closes it;
 * npy_commit renames it over `path` (a file there stays whole until then). On failure each removes
 * the temporary file; npy_discard removes a staged file that will not be committed. */
int npy_stage(const char *folder, const char *dtype, int ndim, const int64_t *shape, const void *data, size_t nbytes,
              char *staged, size_t staged_size, char *error, size_t error_size);
int npy_commit(const char *staged, const char *path, char *error, size_t error_size);
void npy_discard(const char *staged);
/* npy_stage and npy_commit in one. */
int npy_write(const char *path, const char *dtype, int ndim, const int64_t *shape, const void *data, size_t nbytes,
              char *error, size_t error_size);
void npy_free(npy_array *array);

#endif /* EDGECC_NPY_H_ */
