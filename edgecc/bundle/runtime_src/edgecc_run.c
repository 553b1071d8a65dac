/* edgecc-run: run a bundled model on .npy inputs and write each output as OUTDIR/<name>.npy.
 *
 *   bin/edgecc-run --input input_ids=ids.npy --input attention_mask=mask.npy --output-dir out/
 *
 * Plain C over edgecc_model.h. Every failure is one line on stderr and a non-zero exit:
 * 2 for bad arguments or inputs, 1 for a bundle, device or runtime failure.
 *
 * Output files: <name> is the output's name with every byte but letters, digits, '_', '-' and '.'
 * (and a leading '.', and '%' itself) written as %XX, so distinct outputs never share a file
 * (`y/1` -> y%2F1.npy, `y_1` -> y_1.npy). Each is written to a temporary file in DIR, fsync'd and
 * renamed into place only once every output was written whole: a full disk or a file-size limit
 * leaves the earlier files as they were and no partial .npy.
 */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "edgecc_model.h"
#include "npy.h"

#define MAX_INPUTS 64

static void usage(FILE *to) {
  fprintf(to,
          "usage: edgecc-run --input NAME=FILE.npy [--input ...] [--output-dir DIR] [--bundle DIR]\n"
          "                  [--threads N] [--repeat N] [--info]\n"
          "  --input NAME=FILE.npy  one per model input (see --info for names, shapes, dtypes)\n"
          "  --output-dir DIR       write DIR/<output name>.npy for each output (default: .)\n"
          "  --bundle DIR           the bundle folder (default: the folder above this program's bin/)\n"
          "  --threads N            CPU threads (default: TVM_NUM_THREADS, else the board's cores)\n"
          "  --repeat N             run N times and print the median and minimum time per run\n"
          "  --info                 print the model's inputs and outputs and exit\n");
}

static int fail(int code, const char *format, const char *detail) {
  fprintf(stderr, "edgecc-run: error: ");
  fprintf(stderr, format, detail);
  fprintf(stderr, "\n");
  return code;
}

/* The bundle is the parent of the folder holding this executable. */
static int default_bundle(const char *argv0, char *out, size_t size) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = 0;
  } else if (!realpath(argv0, exe)) {
    return -1;
  }
  char *slash = strrchr(exe, '/');
  if (!slash) return -1;
  *slash = 0; /* .../bin */
  slash = strrchr(exe, '/');
  if (slash) *slash = 0; else snprintf(exe, sizeof exe, ".");
  snprintf(out, size, "%s", exe[0] ? exe : "/");
  return 0;
}

static int make_dirs(const char *path) {
  char buffer[PATH_MAX];
  snprintf(buffer, sizeof buffer, "%s", path);
  for (char *p = buffer + 1; *p; ++p) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(buffer, 0755) != 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  return mkdir(buffer, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* The output's file name (see the top of this file); -1 when it is longer than a file name may be. */
static int output_file_name(const char *name, char *out, size_t size) {
  static const char hex[] = "0123456789ABCDEF";
  size_t used = 0;
  for (const unsigned char *p = (const unsigned char *)name; *p; ++p) {
    int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
                *p == '-' || (*p == '.' && p != (const unsigned char *)name);
    if (used + 4 >= size) return -1;
    if (plain) {
      out[used++] = (char)*p;
    } else {
      out[used++] = '%';
      out[used++] = hex[*p >> 4];
      out[used++] = hex[*p & 15];
    }
  }
  if (used + sizeof ".npy" > size) return -1;
  memcpy(out + used, ".npy", sizeof ".npy");
  return 0;
}

/* Every output's file name, before the model runs. Names that differ only in letter case are
 * refused: a case-insensitive file system (macOS, Windows shares) would write both to one file. */
static int output_file_names(const edgecc_model *model, char (*names)[NAME_MAX + 1], int count) {
  edgecc_tensor_info info, other;
  for (int i = 0; i < count; ++i) {
    edgecc_model_output_info(model, i, &info);
    if (output_file_name(info.name, names[i], NAME_MAX + 1) != 0)
      return fail(1, "output '%s' has a name too long for a file name", info.name);
    for (int k = 0; k < i; ++k) {
      if (strcasecmp(names[k], names[i]) != 0) continue;
      edgecc_model_output_info(model, k, &other);
      fprintf(stderr, "edgecc-run: error: outputs '%s' and '%s' differ only in letter case; their files %s and %s "
              "would be one file on a case-insensitive file system\n", other.name, info.name, names[k], names[i]);
      return 1;
    }
  }
  return 0;
}

/* The output folder's entries (the renames) reach the disk too; not every file system can sync a folder. */
static void sync_folder(const char *path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return;
  fsync(fd);
  close(fd);
}

static void print_info(const edgecc_model *model) {
  edgecc_tensor_info info;
  printf("device %s, %d threads\n", edgecc_model_device(model), edgecc_model_num_threads(model));
  for (int kind = 0; kind < 2; ++kind) {
    int count = kind ? edgecc_model_num_outputs(model) : edgecc_model_num_inputs(model);
    for (int i = 0; i < count; ++i) {
      if (kind) edgecc_model_output_info(model, i, &info); else edgecc_model_input_info(model, i, &info);
      printf("%s %s %s [", kind ? "output" : "input ", info.name, info.dtype);
      for (int d = 0; d < info.ndim; ++d) {  /* a dynamic axis prints as 1..max */
        printf("%s%s%lld", d ? ", " : "", info.axes[d] ? "1.." : "", (long long)info.shape[d]);
      }
      printf("]");
      if (info.has_valid_range) printf(" valid %lld <= v < %lld", (long long)info.valid_min, (long long)info.valid_max);
      printf("\n");
    }
  }
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  signal(SIGXFSZ, SIG_IGN); /* a file-size limit becomes a write error (EFBIG) the output writer reports */
  const char *names[MAX_INPUTS], *files[MAX_INPUTS], *output_dir = ".", *bundle = NULL;
  int num_given = 0, repeat = 1, info_only = 0;
  edgecc_open_options options = {0};
  for (int i = 1; i < argc; ++i) {
    const char *arg = argv[i];
    int has_value = i + 1 < argc;
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(arg, "--info") == 0) {
      info_only = 1;
    } else if (strcmp(arg, "--input") == 0 && has_value) {
      char *value = argv[++i], *eq = strchr(value, '=');
      if (!eq || eq == value || !eq[1]) return fail(2, "bad --input '%s': expected NAME=FILE.npy", value);
      if (num_given == MAX_INPUTS) return fail(2, "%s", "too many --input options");
      *eq = 0;
      for (int k = 0; k < num_given; ++k)
        if (strcmp(names[k], value) == 0) return fail(2, "--input %s is given twice", value);
      names[num_given] = value;
      files[num_given++] = eq + 1;
    } else if (strcmp(arg, "--output-dir") == 0 && has_value) {
      output_dir = argv[++i];
    } else if (strcmp(arg, "--bundle") == 0 && has_value) {
      bundle = argv[++i];
    } else if ((strcmp(arg, "--threads") == 0 || strcmp(arg, "--repeat") == 0) && has_value) {
      char *end = NULL;
      long n = strtol(argv[++i], &end, 10);
      if (*end || n < 1 || n > 1000000) return fail(2, "%s needs a positive whole number", arg);
      if (arg[2] == 't') options.num_threads = (int)n; else repeat = (int)n;
    } else {
      usage(stderr);
      return fail(2, "unknown or incomplete option '%s'", arg);
    }
  }
  char bundle_buffer[PATH_MAX];
  if (!bundle) {
    if (default_bundle(argv[0], bundle_buffer, sizeof bundle_buffer) != 0)
      return fail(2, "%s", "cannot tell where the bundle is; pass --bundle DIR");
    bundle = bundle_buffer;
  }
  edgecc_model *model = edgecc_model_open(bundle, &options);
  if (!model) return fail(1, "%s", edgecc_last_error());
  if (info_only) {
    print_info(model);
    edgecc_model_close(model);
    return 0;
  }

  int code = 0, num_inputs = edgecc_model_num_inputs(model), num_outputs = edgecc_model_num_outputs(model);
  char error[512];
  char (*file_names)[NAME_MAX + 1] = calloc((size_t)num_outputs + 1, sizeof *file_names);
  char (*staged)[PATH_MAX] = calloc((size_t)num_outputs + 1, sizeof *staged);
  if (!file_names || !staged) code = fail(1, "%s", "out of memory for the outputs");
  if (code == 0) code = output_file_names(model, file_names, num_outputs);
  npy_array arrays[MAX_INPUTS];
  edgecc_tensor inputs[MAX_INPUTS], *outputs = calloc((size_t)num_outputs + 1, sizeof *outputs);
  int loaded = 0;
  for (int i = 0; i < num_inputs && code == 0; ++i) {
    edgecc_tensor_info info;
    edgecc_model_input_info(model, i, &info);
    int found = -1;
    for (int k = 0; k < num_given; ++k)
      if (strcmp(names[k], info.name) == 0) found = k;
    if (found < 0) code = fail(2, "missing --input %s=FILE.npy (see --info)", info.name);
  }
  for (int k = 0; k < num_given && code == 0; ++k) {
    if (edgecc_model_find_input(model, names[k]) < 0) code = fail(2, "the model has no input '%s' (see --info)", names[k]);
  }
  for (int k = 0; k < num_given && code == 0; ++k, ++loaded) {
    if (npy_read(files[k], &arrays[k], error, sizeof error) != 0) {
      code = fail(2, "%s", error);
      break;
    }
    inputs[k] = (edgecc_tensor){names[k], arrays[k].dtype, arrays[k].ndim, arrays[k].shape, arrays[k].data,
                                arrays[k].nbytes};
  }
  int64_t *output_shapes = calloc((size_t)num_outputs * 16 + 1, sizeof *output_shapes);
  for (int i = 0; i < num_outputs && code == 0; ++i) {
    edgecc_tensor_info info;
    size_t nbytes = 0;
    edgecc_model_output_info(model, i, &info);
    int64_t *shape = output_shapes + 16 * i;  /* at the inputs' sizes, for a model with dynamic axes */
    if (info.ndim > 16) {
      code = fail(1, "output '%s' has more than 16 dimensions", info.name);
      break;
    }
    edgecc_status status = edgecc_model_output_shape(model, i, inputs, num_given, shape, &nbytes);
    if (status != EDGECC_OK) {
      code = fail(status == EDGECC_ERROR_INPUT || status == EDGECC_ERROR_ARGUMENT ? 2 : 1, "%s", edgecc_last_error());
      break;
    }
    void *data = malloc(nbytes ? nbytes : 1);
    if (!data) code = fail(1, "%s", "out of memory for the outputs");
    outputs[i] = (edgecc_tensor){info.name, info.dtype, info.ndim, shape, data, nbytes};
  }
  double *times = code == 0 ? calloc((size_t)repeat, sizeof *times) : NULL;
  for (int r = 0; r < repeat && code == 0; ++r) {
    double start = now_ms();
    edgecc_status status = edgecc_model_run(model, inputs, num_given, outputs, num_outputs);
    times[r] = now_ms() - start;
    if (status != EDGECC_OK) code = fail(status == EDGECC_ERROR_INPUT || status == EDGECC_ERROR_ARGUMENT ? 2 : 1,
                                         "%s", edgecc_last_error());
  }
  if (code == 0 && make_dirs(output_dir) != 0) code = fail(1, "cannot create the output folder %s", output_dir);
  for (int i = 0; i < num_outputs && code == 0; ++i) {  /* every output written whole before any replaces a file */
    if (npy_stage(output_dir, outputs[i].dtype, outputs[i].ndim, outputs[i].shape, outputs[i].data, outputs[i].nbytes,
                  staged[i], sizeof staged[i], error, sizeof error) != 0)
      code = fail(1, "%s", error);
  }
  for (int i = 0; i < num_outputs && code == 0; ++i) {
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", output_dir, file_names[i]) >= sizeof path) {
      code = fail(1, "the output folder's path %s is too long", output_dir);
    } else if (npy_commit(staged[i], path, error, sizeof error) != 0) {
      code = fail(1, "%s", error);
    } else {
      staged[i][0] = 0;
      printf("wrote %s\n", path);
    }
  }
  for (int i = 0; staged && i < num_outputs; ++i) npy_discard(staged[i]);
  if (code == 0 && num_outputs > 0) sync_folder(output_dir);
  if (code == 0 && repeat > 1) {
    qsort(times, (size_t)repeat, sizeof *times, compare_doubles);
    printf("%d runs: median %.3f ms, min %.3f ms (%d threads)\n", repeat, times[repeat / 2], times[0],
           edgecc_model_num_threads(model));
  }
  free(times);
  for (int i = 0; i < num_outputs; ++i) free(outputs[i].data);
  free(outputs);
  free(output_shapes);
  free(file_names);
  free(staged);
  for (int k = 0; k < loaded; ++k) npy_free(&arrays[k]);
  edgecc_model_close(model);
  return code;
}
