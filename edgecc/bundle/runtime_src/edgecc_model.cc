// edgecc_model.cc: the C API of edgecc_model.h over the TVM FFI (tvm-ffi) C++ headers.
//
// Loading: model.json describes the tensors; model.so is a TVM Relax VM executable that
// tvm::ffi::Module::LoadFromFile opens; its vm_load_executable gives the VM, vm_initialization
// picks the device, and main() runs the model. No C++ exception leaves this file: every C entry
// point catches everything and turns it into a status and one line in edgecc_last_error().
#include "edgecc_model.h"

#include <dlfcn.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/container/shape.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/dtype.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/json.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace ffi = tvm::ffi;

namespace {

thread_local std::string g_last_error;
bool g_pool_started = false;  // TVM sizes its thread pool once, at the first parallel kernel

struct Failure : std::runtime_error {
  edgecc_status status;
  Failure(edgecc_status s, const std::string& what) : std::runtime_error(what), status(s) {}
};

[[noreturn]] void fail(edgecc_status status, const std::string& what) { throw Failure(status, what); }

struct TensorSpec {
  std::string name, dtype;
  std::vector<int64_t> shape;  // the largest, on dynamic axes
  std::vector<int> axes;       // per axis: an edgecc_axis (model.json "dynamic_axes": {"1": "sequence"})
  size_t nbytes = 0;           // at `shape`
  size_t element_bytes = 0;
  DLDataType dl_dtype{};
  bool has_range = false;
  int64_t range_min = 0, range_max = 0;
};

// The size given for each edgecc_axis kind in one run (0: not seen yet).
struct Sizes {
  int64_t of[3] = {0, 0, 0};
};

const char* axis_name(int kind) { return kind == EDGECC_AXIS_BATCH ? "batch" : "sequence"; }

struct CudaNeeds {
  bool needed = false;
  int min_driver_version = 0;  // cuDriverGetVersion's encoding: 1000 * major + 10 * minor
  std::string runtime_library;  // e.g. libcudart.so.13
};

// ---- model.json, read with tvm-ffi's own JSON parser -------------------------------------------

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(EDGECC_ERROR_BUNDLE, "cannot read " + path + ": " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

ffi::Any field(const ffi::Map<ffi::Any, ffi::Any>& obj, const char* key, const std::string& where) {
  auto found = obj.find(ffi::String(key));
  if (found == obj.end()) fail(EDGECC_ERROR_BUNDLE, where + ": missing field '" + key + "'");
  return (*found).second;
}

std::string as_string(const ffi::Any& value, const std::string& where) {
  auto text = value.try_cast<ffi::String>();
  if (!text) fail(EDGECC_ERROR_BUNDLE, where + " must be a string");
  return std::string(*text);
}

int64_t as_int(const ffi::Any& value, const std::string& where) {
  if (value.type_index() != ffi::TypeIndex::kTVMFFIInt) fail(EDGECC_ERROR_BUNDLE, where + " must be an integer");
  return value.cast<int64_t>();
}

ffi::Array<ffi::Any> as_list(const ffi::Any& value, const std::string& where) {
  auto list = value.try_cast<ffi::Array<ffi::Any>>();
  if (!list) fail(EDGECC_ERROR_BUNDLE, where + " must be a list");
  return *list;
}

ffi::Map<ffi::Any, ffi::Any> as_object(const ffi::Any& value, const std::string& where) {
  auto obj = value.try_cast<ffi::Map<ffi::Any, ffi::Any>>();
  if (!obj) fail(EDGECC_ERROR_BUNDLE, where + " must be an object");
  return *obj;
}

TensorSpec parse_tensor(const ffi::Any& value, const std::string& where) {
  auto obj = as_object(value, where);
  TensorSpec spec;
  spec.name = as_string(field(obj, "name", where), where + ".name");
  spec.dtype = as_string(field(obj, "dtype", where), where + ".dtype");
  try {
    spec.dl_dtype = ffi::StringToDLDataType(ffi::String(spec.dtype));
  } catch (const std::exception&) {
    fail(EDGECC_ERROR_BUNDLE, where + ".dtype '" + spec.dtype + "' is not a dtype");
  }
  size_t count = 1;
  for (const ffi::Any& dim : as_list(field(obj, "shape", where), where + ".shape")) {
    int64_t size = as_int(dim, where + ".shape[]");
    if (size < 0) fail(EDGECC_ERROR_BUNDLE, where + ".shape has a negative dimension");
    spec.shape.push_back(size);
    count *= static_cast<size_t>(size);
  }
  spec.element_bytes = (spec.dl_dtype.bits * spec.dl_dtype.lanes + 7) / 8;
  spec.nbytes = count * spec.element_bytes;
  spec.axes.assign(spec.shape.size(), EDGECC_AXIS_FIXED);
  auto dynamic = obj.find(ffi::String("dynamic_axes"));
  if (dynamic != obj.end() && (*dynamic).second != nullptr) {
    for (const auto& entry : as_object((*dynamic).second, where + ".dynamic_axes")) {
      std::string axis_text = as_string(entry.first, where + ".dynamic_axes key");
      std::string kind = as_string(entry.second, where + ".dynamic_axes[" + axis_text + "]");
      char* end = nullptr;
      long axis = std::strtol(axis_text.c_str(), &end, 10);
      if (axis_text.empty() || *end || axis < 0 || axis >= static_cast<long>(spec.shape.size())) {
        fail(EDGECC_ERROR_BUNDLE, where + ".dynamic_axes has no axis '" + axis_text + "'");
      }
      if (kind != "batch" && kind != "sequence") {
        fail(EDGECC_ERROR_BUNDLE, where + ".dynamic_axes[" + axis_text + "] must be \"batch\" or \"sequence\"");
      }
      spec.axes[axis] = kind == "batch" ? EDGECC_AXIS_BATCH : EDGECC_AXIS_SEQUENCE;
    }
  }
  auto range = obj.find(ffi::String("valid_range"));
  if (range != obj.end() && (*range).second != nullptr) {
    auto bounds = as_list((*range).second, where + ".valid_range");
    if (bounds.size() != 2) fail(EDGECC_ERROR_BUNDLE, where + ".valid_range must be [min, max]");
    spec.has_range = true;
    spec.range_min = as_int(bounds[0], where + ".valid_range[0]");
    spec.range_max = as_int(bounds[1], where + ".valid_range[1]");
  }
  return spec;
}

// ---- devices -----------------------------------------------------------------------------------

int device_type(const std::string& device) {
  if (device == "cpu") return kDLCPU;
  if (device == "cuda") return kDLCUDA;
  if (device == "metal") return kDLMetal;
  fail(EDGECC_ERROR_BUNDLE, "model.json: device '" + device + "' is not one this runtime can open");
}

std::string cuda_version_text(int version) {
  return std::to_string(version / 1000) + "." + std::to_string((version % 1000) / 10);
}

// The CUDA driver is opened with dlopen so that a board without one still gets this message
// instead of a loader error before main().
void check_cuda(const CudaNeeds& needs) {
  void* driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
  if (!driver) {
    fail(EDGECC_ERROR_DEVICE, "this model runs on an NVIDIA GPU, but no CUDA driver (libcuda.so.1) was found; "
         "it needs a driver for CUDA " + cuda_version_text(needs.min_driver_version) + " or newer (see README.md)");
  }
  using GetVersion = int (*)(int*);
  using Init = int (*)(unsigned);
  using DeviceCount = int (*)(int*);
  auto get_version = reinterpret_cast<GetVersion>(dlsym(driver, "cuDriverGetVersion"));
  auto init = reinterpret_cast<Init>(dlsym(driver, "cuInit"));
  auto device_count = reinterpret_cast<DeviceCount>(dlsym(driver, "cuDeviceGetCount"));
  int version = 0, devices = 0;
  if (!get_version || get_version(&version) != 0) fail(EDGECC_ERROR_DEVICE, "the CUDA driver did not report its version");
  if (version < needs.min_driver_version) {
    fail(EDGECC_ERROR_DEVICE, "this model needs a CUDA " + cuda_version_text(needs.min_driver_version) +
         " driver or newer; this board's driver supports CUDA " + cuda_version_text(version) + " (see README.md)");
  }
  if (!init || init(0) != 0 || !device_count || device_count(&devices) != 0 || devices == 0) {
    fail(EDGECC_ERROR_DEVICE, "the CUDA driver found no usable GPU");
  }
  if (!needs.runtime_library.empty() && !dlopen(needs.runtime_library.c_str(), RTLD_NOW | RTLD_GLOBAL)) {
    fail(EDGECC_ERROR_DEVICE, "the CUDA runtime " + needs.runtime_library + " was not found (JetPack installs it; "
         "see README.md)");
  }
}

void load_device_runtime(const std::string& path) {
  if (!dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL)) {
    const char* why = dlerror();
    fail(EDGECC_ERROR_DEVICE, "cannot load the device runtime " + path + ": " + (why ? why : "unknown reason"));
  }
}

std::string first_line(const std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  return line.empty() ? "unknown error" : line;
}

std::string describe(const std::exception& error) {
  if (auto* tvm_error = dynamic_cast<const ffi::Error*>(&error)) {
    return std::string(tvm_error->kind()) + ": " + first_line(std::string(tvm_error->message()));
  }
  return first_line(error.what());
}

std::string shape_text(const int64_t* shape, int ndim) {
  std::string text;
  for (int i = 0; i < ndim; ++i) text += (i ? "x" : "") + std::to_string(shape[i]);
  return ndim == 0 ? "scalar" : text;
}

// The shapes a spec accepts: 1x1..256 for a dynamic sequence of up to 256.
std::string accepted_text(const TensorSpec& spec) {
  std::string text;
  for (size_t i = 0; i < spec.shape.size(); ++i) {
    text += (i ? "x" : "") + std::string(spec.axes[i] ? "1.." : "") + std::to_string(spec.shape[i]);
  }
  return spec.shape.empty() ? "scalar" : text;
}

// The spec's shape with each dynamic axis at the size given for its kind.
std::vector<int64_t> shape_at(const TensorSpec& spec, const Sizes& sizes) {
  std::vector<int64_t> shape = spec.shape;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (spec.axes[i] && sizes.of[spec.axes[i]] > 0) shape[i] = sizes.of[spec.axes[i]];
  }
  return shape;
}

size_t bytes_of(const TensorSpec& spec, const std::vector<int64_t>& shape) {
  size_t count = 1;
  for (int64_t d : shape) count *= static_cast<size_t>(d);
  return count * spec.element_bytes;
}

// The first value outside [min, max) of an integer input, if any.
template <typename T>
bool find_out_of_range(const void* data, size_t count, int64_t lo, int64_t hi, size_t* at, int64_t* value) {
  const T* values = static_cast<const T*>(data);
  for (size_t i = 0; i < count; ++i) {
    int64_t v = static_cast<int64_t>(values[i]);
    if (v < lo || v >= hi) {
      *at = i;
      *value = v;
      return true;
    }
  }
  return false;
}

bool out_of_range(const TensorSpec& spec, const void* data, size_t nbytes, size_t* at, int64_t* value) {
  size_t count = nbytes / ((spec.dl_dtype.bits + 7) / 8);
  int64_t lo = spec.range_min, hi = spec.range_max;
  bool is_signed = spec.dl_dtype.code == kDLInt;
  if (spec.dl_dtype.code != kDLInt && spec.dl_dtype.code != kDLUInt) return false;
  switch (spec.dl_dtype.bits) {
    case 64: return is_signed ? find_out_of_range<int64_t>(data, count, lo, hi, at, value)
                              : find_out_of_range<uint64_t>(data, count, lo, hi, at, value);
    case 32: return is_signed ? find_out_of_range<int32_t>(data, count, lo, hi, at, value)
                              : find_out_of_range<uint32_t>(data, count, lo, hi, at, value);
    case 16: return is_signed ? find_out_of_range<int16_t>(data, count, lo, hi, at, value)
                              : find_out_of_range<uint16_t>(data, count, lo, hi, at, value);
    case 8: return is_signed ? find_out_of_range<int8_t>(data, count, lo, hi, at, value)
                             : find_out_of_range<uint8_t>(data, count, lo, hi, at, value);
    default: return false;
  }
}

}  // namespace

struct edgecc_model {
  std::string dir, device;
  std::vector<TensorSpec> inputs, outputs;
  int threads = 1;
  DLDevice dl_device{kDLCPU, 0};
  std::optional<ffi::Module> library, vm;  // Module has no empty state
  ffi::Function main, copy_from_bytes, copy_to_bytes, alloc_tensor;
  std::vector<ffi::Tensor> input_tensors;

  void load_description() {
    const std::string path = dir + "/model.json";
    ffi::String error;
    ffi::Any root = ffi::json::Parse(ffi::String(read_file(path)), &error);
    if (!error.empty()) fail(EDGECC_ERROR_BUNDLE, path + " is not valid JSON: " + std::string(error));
    auto obj = as_object(root, path);
    std::string format = as_string(field(obj, "format", path), path + ": format");
    if (format != "edgecc-bundle/1") fail(EDGECC_ERROR_BUNDLE, path + ": unknown format '" + format + "'");
    device = as_string(field(obj, "device", path), path + ": device");
    dl_device = DLDevice{static_cast<DLDeviceType>(device_type(device)), 0};
    threads = static_cast<int>(as_int(field(obj, "threads", path), path + ": threads"));
    auto inputs_list = as_list(field(obj, "inputs", path), path + ": inputs");
    for (size_t i = 0; i < inputs_list.size(); ++i) {
      inputs.push_back(parse_tensor(inputs_list[i], path + ": inputs[" + std::to_string(i) + "]"));
    }
    auto outputs_list = as_list(field(obj, "outputs", path), path + ": outputs");
    for (size_t i = 0; i < outputs_list.size(); ++i) {
      outputs.push_back(parse_tensor(outputs_list[i], path + ": outputs[" + std::to_string(i) + "]"));
    }
    CudaNeeds cuda;
    auto cuda_entry = obj.find(ffi::String("cuda"));
    if (cuda_entry != obj.end() && (*cuda_entry).second != nullptr) {
      auto c = as_object((*cuda_entry).second, path + ": cuda");
      cuda.needed = true;
      cuda.min_driver_version = static_cast<int>(as_int(field(c, "min_driver_version", path), path + ": cuda.min_driver_version"));
      cuda.runtime_library = as_string(field(c, "runtime_library", path), path + ": cuda.runtime_library");
    }
    if (cuda.needed) check_cuda(cuda);
    auto device_runtimes = obj.find(ffi::String("device_runtime_libraries"));
    if (device_runtimes != obj.end()) {
      for (const ffi::Any& lib : as_list((*device_runtimes).second, path + ": device_runtime_libraries")) {
        load_device_runtime(dir + "/" + as_string(lib, path + ": device_runtime_libraries[]"));
      }
    }
    library_path = dir + "/" + as_string(field(obj, "library", path), path + ": library");
  }

  std::string library_path;

  void choose_threads(const edgecc_open_options* options) {
    const char* env = std::getenv("TVM_NUM_THREADS");
    int from_env = env ? std::atoi(env) : 0;
    if (options && options->num_threads > 0) {
      threads = options->num_threads;
    } else if (from_env > 0) {
      threads = from_env;
    }
    if (threads < 1) threads = 1;
    if (!g_pool_started) setenv("TVM_NUM_THREADS", std::to_string(threads).c_str(), 1);
  }

  void load() {
    {
      std::ifstream probe(library_path, std::ios::binary);
      if (!probe) fail(EDGECC_ERROR_BUNDLE, "cannot read " + library_path + ": " + std::strerror(errno));
    }
    try {
      library = ffi::Module::LoadFromFile(ffi::String(library_path));
      auto load_executable = (*library)->GetFunction("vm_load_executable");
      if (!load_executable) fail(EDGECC_ERROR_BUNDLE, library_path + " is not a TVM Relax VM executable");
      vm = (*load_executable)().cast<ffi::Module>();
      auto init = (*vm)->GetFunction("vm_initialization");
      auto entry = (*vm)->GetFunction("main");
      if (!init || !entry) fail(EDGECC_ERROR_BUNDLE, library_path + " has no Relax VM entry point 'main'");
      constexpr int kPooledAllocator = 2;
      (*init)(static_cast<int>(dl_device.device_type), dl_device.device_id, kPooledAllocator,
              static_cast<int>(kDLCPU), 0, kPooledAllocator);
      main = *entry;
      copy_from_bytes = ffi::Function::GetGlobalRequired("runtime.TVMTensorCopyFromBytes");
      copy_to_bytes = ffi::Function::GetGlobalRequired("runtime.TVMTensorCopyToBytes");
      alloc_tensor = ffi::Function::GetGlobalRequired("runtime.TVMTensorAllocWithScope");
      for (const TensorSpec& spec : inputs) {
        input_tensors.push_back(alloc_tensor(ffi::Shape(spec.shape), spec.dl_dtype, dl_device, nullptr).cast<ffi::Tensor>());
      }
    } catch (const Failure&) {
      throw;
    } catch (const std::exception& error) {
      fail(EDGECC_ERROR_RUNTIME, "cannot load " + library_path + ": " + describe(error));
    }
  }

  const TensorSpec& match(const std::vector<TensorSpec>& specs, const edgecc_tensor& given, int position,
                          const char* kind, std::vector<bool>& seen, int* index) const {
    int found = position;
    if (given.name) {
      found = -1;
      for (size_t i = 0; i < specs.size(); ++i) {
        if (specs[i].name == given.name) found = static_cast<int>(i);
      }
      if (found < 0) {
        std::string known;
        for (const TensorSpec& s : specs) known += (known.empty() ? "" : ", ") + s.name;
        fail(EDGECC_ERROR_INPUT, std::string("the model has no ") + kind + " '" + given.name + "'; its " + kind +
             "s are: " + known);
      }
    }
    if (seen[found]) fail(EDGECC_ERROR_INPUT, std::string(kind) + " '" + specs[found].name + "' is given twice");
    seen[found] = true;
    *index = found;
    return specs[found];
  }

  // An input (strict: dtype and shape must be given) or an output buffer against its spec. An input's
  // dynamic axes record their sizes in `sizes` (all inputs must agree); an output must have the
  // shape those sizes give it.
  void check(const TensorSpec& spec, const edgecc_tensor& given, const char* kind, bool strict, Sizes& sizes) const {
    const std::string who = std::string(kind) + " '" + spec.name + "'";
    if ((strict || given.dtype) && (!given.dtype || spec.dtype != given.dtype)) {
      fail(EDGECC_ERROR_INPUT, who + " has dtype " + (given.dtype ? given.dtype : "(none)") + ", the model expects " +
           spec.dtype);
    }
    std::vector<int64_t> expected = shape_at(spec, sizes);
    if (strict || given.ndim >= 0) {
      const std::string given_text = given.shape || given.ndim == 0 ? shape_text(given.shape, given.ndim) : "(none)";
      bool same = given.ndim == static_cast<int>(spec.shape.size()) && (given.ndim == 0 || given.shape);
      for (int i = 0; same && i < given.ndim; ++i) {
        int axis = spec.axes[i];
        if (!strict || !axis) {
          same = given.shape[i] == expected[i];
          continue;
        }
        if (given.shape[i] < 1 || given.shape[i] > spec.shape[i]) {
          fail(EDGECC_ERROR_INPUT, who + " has " + axis_name(axis) + " size " + std::to_string(given.shape[i]) +
               " (shape " + given_text + "); the model accepts " + axis_name(axis) + " sizes 1.." +
               std::to_string(spec.shape[i]));
        }
        if (sizes.of[axis] > 0 && sizes.of[axis] != given.shape[i]) {
          fail(EDGECC_ERROR_INPUT, who + " has " + axis_name(axis) + " size " + std::to_string(given.shape[i]) +
               ", another input has " + std::to_string(sizes.of[axis]) + "; every input must have the same");
        }
        sizes.of[axis] = expected[i] = given.shape[i];
      }
      if (!same) {
        fail(EDGECC_ERROR_INPUT, who + " has shape " + given_text + (strict ? ", the model was compiled for " +
             accepted_text(spec) : ", the model returns " + shape_text(expected.data(), static_cast<int>(expected.size()))));
      }
    }
    size_t nbytes = bytes_of(spec, expected);
    if (!given.data && nbytes > 0) fail(EDGECC_ERROR_ARGUMENT, who + ": data is NULL");
    if (given.nbytes != nbytes) {
      fail(EDGECC_ERROR_INPUT, who + " has " + std::to_string(given.nbytes) + " bytes, the model expects " +
           std::to_string(nbytes));
    }
    size_t at = 0;
    int64_t value = 0;
    if (strict && spec.has_range && out_of_range(spec, given.data, given.nbytes, &at, &value)) {
      fail(EDGECC_ERROR_INPUT, who + " holds " + std::to_string(value) + " at flat index " + std::to_string(at) +
           "; valid values are " + std::to_string(spec.range_min) + " <= v < " + std::to_string(spec.range_max) +
           " (rows of the table it indexes)");
    }
  }

  // Every input checked (see check); their sizes on the dynamic axes; slot[model input] = given index.
  Sizes check_inputs(const edgecc_tensor* given_inputs, int num_inputs, std::vector<int>* slot) const {
    if (num_inputs != static_cast<int>(inputs.size())) {
      fail(EDGECC_ERROR_INPUT, "the model takes " + std::to_string(inputs.size()) + " inputs, " +
           std::to_string(num_inputs) + " were given");
    }
    if (num_inputs && !given_inputs) fail(EDGECC_ERROR_ARGUMENT, "inputs is NULL");
    std::vector<bool> seen(inputs.size());
    Sizes sizes;
    for (int i = 0; i < num_inputs; ++i) {
      int index = 0;
      check(match(inputs, given_inputs[i], i, "input", seen, &index), given_inputs[i], "input", true, sizes);
      if (slot) (*slot)[index] = i;
    }
    return sizes;
  }

  static bool same_shape(const ffi::Tensor& tensor, const std::vector<int64_t>& shape) {
    const DLTensor* t = tensor.GetDLTensorPtr();
    if (t->ndim != static_cast<int>(shape.size())) return false;
    for (int i = 0; i < t->ndim; ++i) {
      if (t->shape[i] != shape[i]) return false;
    }
    return true;
  }

  void run(const edgecc_tensor* given_inputs, int num_inputs, edgecc_tensor* given_outputs, int num_outputs) {
    if (num_inputs != static_cast<int>(inputs.size())) {
      fail(EDGECC_ERROR_INPUT, "the model takes " + std::to_string(inputs.size()) + " inputs, " +
           std::to_string(num_inputs) + " were given");
    }
    if (num_outputs != static_cast<int>(outputs.size())) {
      fail(EDGECC_ERROR_INPUT, "the model returns " + std::to_string(outputs.size()) + " outputs, " +
           std::to_string(num_outputs) + " buffers were given");
    }
    if ((num_inputs && !given_inputs) || (num_outputs && !given_outputs)) fail(EDGECC_ERROR_ARGUMENT, "inputs or outputs is NULL");
    std::vector<bool> seen_out(outputs.size());
    std::vector<int> input_slot(inputs.size()), output_slot(outputs.size());
    Sizes sizes = check_inputs(given_inputs, num_inputs, &input_slot);
    for (int i = 0; i < num_outputs; ++i) {
      int index = 0;
      check(match(outputs, given_outputs[i], i, "output", seen_out, &index), given_outputs[i], "output", false, sizes);
      output_slot[index] = i;
    }
    try {
      std::vector<ffi::AnyView> args;
      for (size_t i = 0; i < inputs.size(); ++i) {
        const edgecc_tensor& t = given_inputs[input_slot[i]];
        std::vector<int64_t> shape = shape_at(inputs[i], sizes);
        if (!same_shape(input_tensors[i], shape)) {  // a new length: a buffer of its size, kept for the next run
          input_tensors[i] = alloc_tensor(ffi::Shape(shape), inputs[i].dl_dtype, dl_device, nullptr).cast<ffi::Tensor>();
        }
        copy_from_bytes(input_tensors[i], t.data, static_cast<int64_t>(t.nbytes));
        args.emplace_back(input_tensors[i]);
      }
      ffi::Any result;
      main.CallPacked(args.data(), static_cast<int32_t>(args.size()), &result);
      g_pool_started = true;
      std::vector<ffi::Tensor> values;
      if (auto single = result.try_cast<ffi::Tensor>()) {
        values.push_back(*single);
      } else if (auto many = result.try_cast<ffi::Array<ffi::Any>>()) {
        for (const ffi::Any& item : *many) values.push_back(item.cast<ffi::Tensor>());
      } else {
        fail(EDGECC_ERROR_RUNTIME, "main returned " + std::string(result.GetTypeKey()) + ", not tensors");
      }
      if (values.size() != outputs.size()) {
        fail(EDGECC_ERROR_RUNTIME, "main returned " + std::to_string(values.size()) + " tensors, model.json lists " +
             std::to_string(outputs.size()));
      }
      for (size_t i = 0; i < outputs.size(); ++i) {
        size_t produced = ffi::GetDataSize(*values[i].GetDLTensorPtr());
        size_t expected = bytes_of(outputs[i], shape_at(outputs[i], sizes));
        if (produced != expected) {
          fail(EDGECC_ERROR_RUNTIME, "output '" + outputs[i].name + "' has " + std::to_string(produced) +
               " bytes, model.json says " + std::to_string(expected));
        }
        edgecc_tensor& out = given_outputs[output_slot[i]];
        copy_to_bytes(values[i], out.data, static_cast<int64_t>(out.nbytes));
      }
    } catch (const Failure&) {
      throw;
    } catch (const std::exception& error) {
      fail(EDGECC_ERROR_RUNTIME, "running the model failed: " + describe(error));
    }
  }
};

namespace {

template <typename F>
edgecc_status guarded(F&& body) {
  try {
    body();
    g_last_error.clear();
    return EDGECC_OK;
  } catch (const Failure& failure) {
    g_last_error = failure.what();
    return failure.status;
  } catch (const std::bad_alloc&) {
    g_last_error = "out of memory";
  } catch (const std::exception& error) {
    g_last_error = describe(error);
  } catch (...) {
    g_last_error = "unknown failure";
  }
  return EDGECC_ERROR_RUNTIME;
}

edgecc_status info_of(const std::vector<TensorSpec>& specs, int index, edgecc_tensor_info* info) {
  if (!info || index < 0 || index >= static_cast<int>(specs.size())) {
    g_last_error = "tensor index " + std::to_string(index) + " out of range (or info is NULL)";
    return EDGECC_ERROR_ARGUMENT;
  }
  const TensorSpec& spec = specs[index];
  *info = edgecc_tensor_info{spec.name.c_str(), spec.dtype.c_str(), static_cast<int>(spec.shape.size()),
                             spec.shape.data(), spec.nbytes, spec.has_range ? 1 : 0, spec.range_min, spec.range_max,
                             spec.axes.data()};
  return EDGECC_OK;
}

int find(const std::vector<TensorSpec>& specs, const char* name) {
  for (size_t i = 0; name && i < specs.size(); ++i) {
    if (specs[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace

extern "C" {

edgecc_model* edgecc_model_open(const char* bundle_dir, const edgecc_open_options* options) {
  edgecc_model* model = nullptr;
  edgecc_status status = guarded([&] {
    if (!bundle_dir) fail(EDGECC_ERROR_ARGUMENT, "bundle_dir is NULL");
    auto owned = std::make_unique<edgecc_model>();
    owned->dir = bundle_dir;
    owned->load_description();
    owned->choose_threads(options);
    owned->load();
    model = owned.release();
  });
  return status == EDGECC_OK ? model : nullptr;
}

void edgecc_model_close(edgecc_model* model) {
  guarded([&] { delete model; });
}

int edgecc_model_num_inputs(const edgecc_model* model) { return model ? static_cast<int>(model->inputs.size()) : -1; }
int edgecc_model_num_outputs(const edgecc_model* model) { return model ? static_cast<int>(model->outputs.size()) : -1; }

edgecc_status edgecc_model_input_info(const edgecc_model* model, int index, edgecc_tensor_info* info) {
  if (!model) return (g_last_error = "model is NULL", EDGECC_ERROR_ARGUMENT);
  return info_of(model->inputs, index, info);
}

edgecc_status edgecc_model_output_info(const edgecc_model* model, int index, edgecc_tensor_info* info) {
  if (!model) return (g_last_error = "model is NULL", EDGECC_ERROR_ARGUMENT);
  return info_of(model->outputs, index, info);
}

int edgecc_model_find_input(const edgecc_model* model, const char* name) { return model ? find(model->inputs, name) : -1; }
int edgecc_model_find_output(const edgecc_model* model, const char* name) { return model ? find(model->outputs, name) : -1; }
int edgecc_model_num_threads(const edgecc_model* model) { return model ? model->threads : -1; }
const char* edgecc_model_device(const edgecc_model* model) { return model ? model->device.c_str() : ""; }

edgecc_status edgecc_model_run(edgecc_model* model, const edgecc_tensor* inputs, int num_inputs,
                               edgecc_tensor* outputs, int num_outputs) {
  return guarded([&] {
    if (!model) fail(EDGECC_ERROR_ARGUMENT, "model is NULL");
    model->run(inputs, num_inputs, outputs, num_outputs);
  });
}

edgecc_status edgecc_model_output_shape(const edgecc_model* model, int index, const edgecc_tensor* inputs,
                                        int num_inputs, int64_t* shape, size_t* nbytes) {
  return guarded([&] {
    if (!model) fail(EDGECC_ERROR_ARGUMENT, "model is NULL");
    if (index < 0 || index >= static_cast<int>(model->outputs.size())) {
      fail(EDGECC_ERROR_ARGUMENT, "output index " + std::to_string(index) + " out of range");
    }
    Sizes sizes = model->check_inputs(inputs, num_inputs, nullptr);
    const TensorSpec& spec = model->outputs[index];
    std::vector<int64_t> at = shape_at(spec, sizes);
    if (shape) std::copy(at.begin(), at.end(), shape);
    if (nbytes) *nbytes = bytes_of(spec, at);
  });
}

const char* edgecc_last_error(void) { return g_last_error.c_str(); }

const char* edgecc_status_name(edgecc_status status) {
  switch (status) {
    case EDGECC_OK: return "ok";
    case EDGECC_ERROR_ARGUMENT: return "bad argument";
    case EDGECC_ERROR_BUNDLE: return "bad bundle";
    case EDGECC_ERROR_DEVICE: return "device unavailable";
    case EDGECC_ERROR_INPUT: return "bad input";
    case EDGECC_ERROR_RUNTIME: return "runtime failure";
  }
  return "unknown status";
}

int edgecc_api_version(void) { return EDGECC_API_VERSION; }

}  // extern "C"
