/* edgecc_model.h: run an edgecc-compiled model from C or C++ with nothing but the bundle.
 *
 * The bundle folder holds model.so, model.json (what the model takes and returns) and lib/ (the TVM
 * runtime). Every function reports failure through its return value and leaves one line in
 * edgecc_last_error(); no function throws or aborts on bad input. One model may not run on two
 * threads at once (it owns its input buffers); open one model per thread instead.
 *
 *   edgecc_model *m = edgecc_model_open("bundle", NULL);
 *   if (!m) { fprintf(stderr, "%s\n", edgecc_last_error()); return 1; }
 *   edgecc_tensor in[2] = {{"input_ids", "int64", 2, shape, ids, sizeof ids}, ...};
 *   edgecc_tensor out[1] = {{NULL, "float32", 3, out_shape, hidden, sizeof hidden}};
 *   if (edgecc_model_run(m, in, 2, out, 1) != EDGECC_OK) fprintf(stderr, "%s\n", edgecc_last_error());
 *   edgecc_model_close(m);
 */
#ifndef EDGECC_MODEL_H_
#define EDGECC_MODEL_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define EDGECC_API __declspec(dllexport)
#else
#define EDGECC_API __attribute__((visibility("default")))
#endif

#define EDGECC_API_VERSION 2 /* 2: edgecc_tensor_info.axes (dynamic batch / sequence axes) */

typedef enum edgecc_status {
  EDGECC_OK = 0,
  EDGECC_ERROR_ARGUMENT = 1, /* a NULL pointer or an index out of range */
  EDGECC_ERROR_BUNDLE = 2,   /* model.json or model.so missing or unreadable */
  EDGECC_ERROR_DEVICE = 3,   /* the device (CUDA driver, GPU) the model needs is absent or too old */
  EDGECC_ERROR_INPUT = 4,    /* an input's count, name, shape, dtype, size or value range is wrong */
  EDGECC_ERROR_RUNTIME = 5   /* the TVM runtime failed while loading or running the model */
} edgecc_status;

typedef struct edgecc_model edgecc_model;

/* Options for edgecc_model_open; pass NULL for the defaults. */
typedef struct edgecc_open_options {
  /* Threads for the CPU kernels. 0: TVM_NUM_THREADS if set, else the board's cores (model.json
   * "threads"). TVM starts its thread pool once per process, at the first run of any model. */
  int num_threads;
} edgecc_open_options;

/* One tensor: a model input or output as the caller holds it (dense, row-major, host memory). */
typedef struct edgecc_tensor {
  const char *name;     /* input/output name; NULL: by position */
  const char *dtype;    /* "float32", "int64", ... ; NULL: not checked (outputs only) */
  int ndim;             /* -1: shape not checked (outputs only) */
  const int64_t *shape; /* ndim entries */
  void *data;           /* inputs are read from here, outputs written here */
  size_t nbytes;        /* size of data in bytes; must equal the tensor's size */
} edgecc_tensor;

/* What an axis of a tensor is. A model compiled with --max-seq-len / --max-batch takes any size
 * 1..shape[axis] on its dynamic axes (one size per kind across all inputs); its outputs' dynamic
 * axes then have the inputs' size of that kind. */
typedef enum edgecc_axis {
  EDGECC_AXIS_FIXED = 0,    /* exactly shape[axis] */
  EDGECC_AXIS_BATCH = 1,    /* 1..shape[axis]: the batch */
  EDGECC_AXIS_SEQUENCE = 2  /* 1..shape[axis]: the sequence length */
} edgecc_axis;

/* What the model expects or returns, from model.json. Pointers live as long as the model.
 * For a tensor with dynamic axes, shape and nbytes are the largest the model accepts or returns. */
typedef struct edgecc_tensor_info {
  const char *name;
  const char *dtype;
  int ndim;
  const int64_t *shape;
  size_t nbytes;
  int has_valid_range;  /* integer ids indexing a table: valid values are min <= v < max */
  int64_t valid_min;
  int64_t valid_max;
  const int *axes;  /* ndim entries, each an edgecc_axis */
} edgecc_tensor_info;

/* Open the bundle folder (the one holding model.json). NULL on failure: see edgecc_last_error(). */
EDGECC_API edgecc_model *edgecc_model_open(const char *bundle_dir, const edgecc_open_options *options);
EDGECC_API void edgecc_model_close(edgecc_model *model);

EDGECC_API int edgecc_model_num_inputs(const edgecc_model *model);   /* -1 for NULL */
EDGECC_API int edgecc_model_num_outputs(const edgecc_model *model);  /* -1 for NULL */
EDGECC_API edgecc_status edgecc_model_input_info(const edgecc_model *model, int index, edgecc_tensor_info *info);
EDGECC_API edgecc_status edgecc_model_output_info(const edgecc_model *model, int index, edgecc_tensor_info *info);
EDGECC_API int edgecc_model_find_input(const edgecc_model *model, const char *name);   /* index or -1 */
EDGECC_API int edgecc_model_find_output(const edgecc_model *model, const char *name);  /* index or -1 */
EDGECC_API int edgecc_model_num_threads(const edgecc_model *model);  /* what the runtime was told */
EDGECC_API const char *edgecc_model_device(const edgecc_model *model);  /* "cpu", "cuda", "metal" */

/* Run once. Inputs are matched by name (or position when name is NULL) and checked against the
 * model: count, shape (dynamic axes: 1..maximum, the same size for every input), dtype, byte size
 * and valid id ranges. Outputs (by name or position) receive copies of the results; an output's
 * buffer must hold exactly its shape at the inputs' sizes (edgecc_model_output_shape). */
EDGECC_API edgecc_status edgecc_model_run(edgecc_model *model, const edgecc_tensor *inputs, int num_inputs,
                                          edgecc_tensor *outputs, int num_outputs);

/* The shape output `index` has when the model runs on `inputs` (the inputs' sizes on its dynamic
 * axes): writes ndim entries to shape and the byte size to nbytes (either may be NULL). */
EDGECC_API edgecc_status edgecc_model_output_shape(const edgecc_model *model, int index, const edgecc_tensor *inputs,
                                                   int num_inputs, int64_t *shape, size_t *nbytes);

/* The last failure on this thread, one line; "" when none. Valid until the next call on this thread. */
EDGECC_API const char *edgecc_last_error(void);
EDGECC_API const char *edgecc_status_name(edgecc_status status);
EDGECC_API int edgecc_api_version(void);

#ifdef __cplusplus
}
#endif

#endif /* EDGECC_MODEL_H_ */
