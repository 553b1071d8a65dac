// edgecc_model.cc: the C API of edgecc_model.h over the TVM FFI (tvm-ffi) C++ headers.
//
// Loading: model.json describes the tensors; model.so is a TVM Relax VM executable that
// tvm::ffi::Module::LoadFromFile opens; its vm_load_executable gives the VM, vm_initialization
// picks the device, and main() runs the model. No C++ exception leaves this file: every C entry
// point catches everything and turns it into a status and one line in edgecc_last_error().
//
// Nothing is loaded before the bundle is checked: model.json (bounded in size and nesting) may
// only name files inside the bundle folder, and each file it loads must have the size and SHA-256
// that `edgecc deploy` recorded in its "files" table and, where the platform's libraries are ELF,
// headers and loadable segments that lie inside the file. A damaged or crafted bundle then fails
// with one line instead of a SIGBUS, a crash, wrong outputs or code run from elsewhere.
#include "edgecc_model.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__has_include)
#if __has_include(<elf.h>)
#include <elf.h>
#define EDGECC_CHECK_ELF 1
#endif
#endif
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
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
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

constexpr size_t kMaxModelJsonBytes = 4u << 20;  // a model with thousands of outputs needs well under 1 MiB
constexpr int kMaxJsonDepth = 32;                // model.json nests 4 deep; tvm-ffi's parser recurses per level
constexpr size_t kMaxDims = 16;                   // as edgecc-run's .npy files
constexpr int kMaxThreads = 1024;
constexpr long kThreadsPerCore = 4;

// A file descriptor closed on every path out.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

std::string errno_text() { return std::strerror(errno); }

// Read at most `limit` bytes of a regular file; larger is refused before anything is read.
std::string read_bounded(const std::string& path, size_t limit) {
  Fd file(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (file.fd < 0) fail(EDGECC_ERROR_BUNDLE, "cannot read " + path + ": " + errno_text());
  struct stat info;
  if (fstat(file.fd, &info) != 0) fail(EDGECC_ERROR_BUNDLE, "cannot read " + path + ": " + errno_text());
  if (!S_ISREG(info.st_mode)) fail(EDGECC_ERROR_BUNDLE, path + " is not a regular file");
  if (static_cast<uint64_t>(info.st_size) > limit) {
    fail(EDGECC_ERROR_BUNDLE, path + " has " + std::to_string(info.st_size) + " bytes, more than the " +
         std::to_string(limit) + " a bundle's description may have");
  }
  std::string text(static_cast<size_t>(info.st_size), '\0');
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = read(file.fd, &text[done], text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(EDGECC_ERROR_BUNDLE, "cannot read " + path + ": " + errno_text());
    if (n == 0) fail(EDGECC_ERROR_BUNDLE, "cannot read " + path + ": it shrank while being read");
    done += static_cast<size_t>(n);
  }
  return text;
}

// How deep arrays and objects nest, outside strings; stops counting past `limit`.
int json_depth(const std::string& text, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size() && deepest <= limit; ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

// ---- SHA-256 (FIPS 180-4), to check model.so against the digest edgecc deploy recorded -----------

class Sha256 {
 public:
  void update(const unsigned char* data, size_t size) {
    total_ += size;
    while (size > 0) {
      size_t take = std::min(size, sizeof block_ - used_);
      std::memcpy(block_ + used_, data, take);
      used_ += take;
      data += take;
      size -= take;
      if (used_ == sizeof block_) {
        compress(block_);
        used_ = 0;
      }
    }
  }

  std::string hex() {
    uint64_t bits = total_ * 8;
    unsigned char pad = 0x80;
    update(&pad, 1);
    pad = 0;
    while (used_ != 56) update(&pad, 1);
    unsigned char length[8];
    for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>(bits >> (56 - 8 * i));
    update(length, 8);
    static const char digits[] = "0123456789abcdef";
    std::string text;
    for (uint32_t word : state_) {
      for (int shift = 28; shift >= 0; shift -= 4) text += digits[(word >> shift) & 0xf];
    }
    return text;
  }

 private:
  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

  void compress(const unsigned char* block) {
    static const uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    uint32_t w[64];
    for (int i = 0; i < 16; ++i) {
      w[i] = (uint32_t(block[4 * i]) << 24) | (uint32_t(block[4 * i + 1]) << 16) | (uint32_t(block[4 * i + 2]) << 8) |
             uint32_t(block[4 * i + 3]);
    }
    for (int i = 16; i < 64; ++i) {
      uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = state_[0], b = state_[1], c = state_[2], d = state_[3];
    uint32_t e = state_[4], f = state_[5], g = state_[6], h = state_[7];
    for (int i = 0; i < 64; ++i) {
      uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    uint32_t add[8] = {a, b, c, d, e, f, g, h};
    for (int i = 0; i < 8; ++i) state_[i] += add[i];
  }

  uint32_t state_[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  unsigned char block_[64];
  size_t used_ = 0;
  uint64_t total_ = 0;
};

// ---- files model.json names ---------------------------------------------------------------------

// What deploy recorded for a file it put in the bundle (model.json "files").
struct FileRecord {
  uint64_t bytes = 0;
  std::string sha256;
};

std::string real_path(const std::string& path, const std::string& what) {
  char resolved[PATH_MAX];
  if (!realpath(path.c_str(), resolved)) fail(EDGECC_ERROR_BUNDLE, "cannot open " + what + " " + path + ": " + errno_text());
  return resolved;
}

// `name` (from model.json) as a path inside the bundle folder, or a failure: no absolute paths, no
// "..", and no symbolic link that leads out of the folder.
std::string inside_bundle(const std::string& dir, const std::string& name, const std::string& what) {
  const std::string refused = "model.json names " + what + " '" + name + "'";
  if (name.empty() || name.find('\0') != std::string::npos) fail(EDGECC_ERROR_BUNDLE, refused + ": not a file name");
  if (name[0] == '/' || name[0] == '\\') fail(EDGECC_ERROR_BUNDLE, refused + ", an absolute path; it must lie inside the bundle");
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find_first_of("/\\", start);
    if (end == std::string::npos) end = name.size();
    if (name.compare(start, end - start, "..") == 0) {
      fail(EDGECC_ERROR_BUNDLE, refused + ", which leads out of the bundle ('..'); it must lie inside the bundle");
    }
    start = end + 1;
  }
  const std::string path = dir + "/" + name;
  const std::string root = real_path(dir, "the bundle folder"), found = real_path(path, what);
  if (found.compare(0, root.size() + 1, root + "/") != 0) {
    fail(EDGECC_ERROR_BUNDLE, refused + ", a link to " + found + " outside the bundle; it must lie inside the bundle");
  }
  return path;
}

#ifdef EDGECC_CHECK_ELF
#if defined(__x86_64__)
constexpr int kElfMachine = EM_X86_64;
#elif defined(__aarch64__)
constexpr int kElfMachine = EM_AARCH64;
#elif defined(__arm__)
constexpr int kElfMachine = EM_ARM;
#elif defined(__riscv)
constexpr int kElfMachine = EM_RISCV;
#elif defined(__i386__)
constexpr int kElfMachine = EM_386;
#else
constexpr int kElfMachine = -1;  // not checked
#endif

bool read_at(int fd, void* out, size_t size, uint64_t offset) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = pread(fd, static_cast<char*>(out) + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// offset + count * size <= file_size, without overflow.
bool fits(uint64_t offset, uint64_t count, uint64_t size, uint64_t file_size) {
  if (count != 0 && size > file_size / count) return false;
  return offset <= file_size && count * size <= file_size - offset;
}

// The ELF header and the program headers the loader maps: a library whose segments run past its
// end is mapped anyway, and touching the missing pages is a SIGBUS.
template <typename Ehdr, typename Phdr, typename Shdr>
void check_elf_layout(int fd, uint64_t file_size, const std::string& path) {
  Ehdr header;
  if (!read_at(fd, &header, sizeof header, 0)) fail(EDGECC_ERROR_BUNDLE, path + " is too short for an ELF header");
  if (header.e_type != ET_DYN) fail(EDGECC_ERROR_BUNDLE, path + " is not a shared library (ELF type " + std::to_string(header.e_type) + ")");
  if (kElfMachine >= 0 && header.e_machine != kElfMachine) {
    fail(EDGECC_ERROR_BUNDLE, path + " is for another processor (ELF machine " + std::to_string(header.e_machine) +
         ", this runtime is built for " + std::to_string(kElfMachine) + ")");
  }
  if (header.e_phnum == 0 || header.e_phentsize != sizeof(Phdr) ||
      !fits(header.e_phoff, header.e_phnum, sizeof(Phdr), file_size)) {
    fail(EDGECC_ERROR_BUNDLE, path + " is damaged: its program headers lie outside the file");
  }
  if (header.e_shnum != 0 && (header.e_shentsize != sizeof(Shdr) ||
                              !fits(header.e_shoff, header.e_shnum, sizeof(Shdr), file_size))) {
    fail(EDGECC_ERROR_BUNDLE, path + " is damaged: its section headers lie outside the file");
  }
  bool loads = false;
  for (unsigned i = 0; i < header.e_phnum; ++i) {
    Phdr segment;
    if (!read_at(fd, &segment, sizeof segment, header.e_phoff + uint64_t(i) * sizeof(Phdr))) {
      fail(EDGECC_ERROR_BUNDLE, "cannot read " + path + ": " + errno_text());
    }
    if (segment.p_type != PT_LOAD && segment.p_type != PT_DYNAMIC) continue;
    loads = loads || segment.p_type == PT_LOAD;
    if (!fits(segment.p_offset, 1, segment.p_filesz, file_size) || segment.p_filesz > segment.p_memsz) {
      fail(EDGECC_ERROR_BUNDLE, path + " is damaged: a segment (offset " + std::to_string(segment.p_offset) + ", " +
           std::to_string(segment.p_filesz) + " bytes) runs past the end of the file (" + std::to_string(file_size) +
           " bytes)");
    }
  }
  if (!loads) fail(EDGECC_ERROR_BUNDLE, path + " is damaged: it has no loadable segment");
}

void check_elf(int fd, uint64_t file_size, const std::string& path) {
  unsigned char ident[EI_NIDENT];
  if (!read_at(fd, ident, sizeof ident, 0) || std::memcmp(ident, ELFMAG, SELFMAG) != 0) {
    fail(EDGECC_ERROR_BUNDLE, path + " is not an ELF shared library");
  }
  const bool little = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;
  if (ident[EI_DATA] != (little ? ELFDATA2LSB : ELFDATA2MSB) || ident[EI_VERSION] != EV_CURRENT) {
    fail(EDGECC_ERROR_BUNDLE, path + " is an ELF file of another byte order or version");
  }
  if (ident[EI_CLASS] != (sizeof(void*) == 8 ? ELFCLASS64 : ELFCLASS32)) {
    fail(EDGECC_ERROR_BUNDLE, path + " is built for " + (ident[EI_CLASS] == ELFCLASS64 ? "64" : "32") +
         "-bit processes, this runtime is not");
  }
  if (sizeof(void*) == 8) {
    check_elf_layout<Elf64_Ehdr, Elf64_Phdr, Elf64_Shdr>(fd, file_size, path);
  } else {
    check_elf_layout<Elf32_Ehdr, Elf32_Phdr, Elf32_Shdr>(fd, file_size, path);
  }
}
#endif

// A file the runtime will load: the size and SHA-256 deploy recorded, and, on ELF platforms, a
// layout the loader can map without reading past the end.
void check_recorded_file(const std::string& path, const std::string& name, const FileRecord& record) {
  Fd file(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (file.fd < 0) fail(EDGECC_ERROR_BUNDLE, "cannot read " + path + ": " + errno_text());
  struct stat info;
  if (fstat(file.fd, &info) != 0) fail(EDGECC_ERROR_BUNDLE, "cannot read " + path + ": " + errno_text());
  if (!S_ISREG(info.st_mode)) fail(EDGECC_ERROR_BUNDLE, path + " is not a regular file");
  const uint64_t size = static_cast<uint64_t>(info.st_size);
  if (size != record.bytes) {
    fail(EDGECC_ERROR_BUNDLE, path + " has " + std::to_string(size) + " bytes, model.json records " +
         std::to_string(record.bytes) + " for " + name + ": the bundle is damaged or incomplete (deploy it again)");
  }
  Sha256 digest;
  std::vector<unsigned char> buffer(1 << 20);
  uint64_t done = 0;
  while (true) {
    ssize_t n = read(file.fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(EDGECC_ERROR_BUNDLE, "cannot read " + path + ": " + errno_text());
    if (n == 0) break;
    digest.update(buffer.data(), static_cast<size_t>(n));
    done += static_cast<uint64_t>(n);
  }
  if (done != size || digest.hex() != record.sha256) {
    fail(EDGECC_ERROR_BUNDLE, path + " does not match the SHA-256 model.json records for " + name +
         ": the file was changed or damaged after the deploy (deploy it again)");
  }
#ifdef EDGECC_CHECK_ELF
  check_elf(file.fd, size, path);
#endif
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
  if (spec.name.empty() || spec.name.find('\0') != std::string::npos) {
    fail(EDGECC_ERROR_BUNDLE, where + ".name must be a non-empty name");
  }
  spec.dtype = as_string(field(obj, "dtype", where), where + ".dtype");
  try {
    spec.dl_dtype = ffi::StringToDLDataType(ffi::String(spec.dtype));
  } catch (const std::exception&) {
    fail(EDGECC_ERROR_BUNDLE, where + ".dtype '" + spec.dtype + "' is not a dtype");
  }
  spec.element_bytes = (spec.dl_dtype.bits * spec.dl_dtype.lanes + 7) / 8;
  size_t bytes = spec.element_bytes;
  auto dims = as_list(field(obj, "shape", where), where + ".shape");
  if (dims.size() > kMaxDims) fail(EDGECC_ERROR_BUNDLE, where + ".shape has more than " + std::to_string(kMaxDims) + " dimensions");
  for (const ffi::Any& dim : dims) {
    int64_t size = as_int(dim, where + ".shape[]");
    if (size < 0) fail(EDGECC_ERROR_BUNDLE, where + ".shape has a negative dimension");
    if (__builtin_mul_overflow(bytes, static_cast<uint64_t>(size), &bytes) || bytes > (size_t(1) << 48)) {
      fail(EDGECC_ERROR_BUNDLE, where + ".shape is too large for memory");
    }
    spec.shape.push_back(size);
  }
  spec.nbytes = bytes;
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
    if (spec.range_min >= spec.range_max) fail(EDGECC_ERROR_BUNDLE, where + ".valid_range must have min < max");
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

  // model.json, checked whole before anything it names is loaded: every path inside the bundle,
  // every loaded file with its recorded size and SHA-256; then the device runtime and model.so.
  void load_description() {
    const std::string path = dir + "/model.json";
    const std::string text = read_bounded(path, kMaxModelJsonBytes);
    if (json_depth(text, kMaxJsonDepth) > kMaxJsonDepth) {
      fail(EDGECC_ERROR_BUNDLE, path + " nests arrays or objects deeper than " + std::to_string(kMaxJsonDepth) +
           " levels; it is not a bundle description");
    }
    ffi::String error;
    ffi::Any root = ffi::json::Parse(ffi::String(text), &error);
    if (!error.empty()) fail(EDGECC_ERROR_BUNDLE, path + " is not valid JSON: " + std::string(error));
    auto obj = as_object(root, path);
    std::string format = as_string(field(obj, "format", path), path + ": format");
    if (format != "edgecc-bundle/1") fail(EDGECC_ERROR_BUNDLE, path + ": unknown format '" + format + "'");
    device = as_string(field(obj, "device", path), path + ": device");
    dl_device = DLDevice{static_cast<DLDeviceType>(device_type(device)), 0};
    int64_t recorded_threads = as_int(field(obj, "threads", path), path + ": threads");
    if (recorded_threads < 1 || recorded_threads > kMaxThreads) {
      fail(EDGECC_ERROR_BUNDLE, path + ": threads must be 1.." + std::to_string(kMaxThreads));
    }
    threads = static_cast<int>(recorded_threads);
    parse_tensors(obj, "inputs", path, &inputs);
    parse_tensors(obj, "outputs", path, &outputs);
    CudaNeeds cuda;
    auto cuda_entry = obj.find(ffi::String("cuda"));
    if (cuda_entry != obj.end() && (*cuda_entry).second != nullptr) {
      auto c = as_object((*cuda_entry).second, path + ": cuda");
      cuda.needed = true;
      cuda.min_driver_version = static_cast<int>(as_int(field(c, "min_driver_version", path), path + ": cuda.min_driver_version"));
      cuda.runtime_library = as_string(field(c, "runtime_library", path), path + ": cuda.runtime_library");
      if (cuda.runtime_library.find_first_of("/\\") != std::string::npos || cuda.runtime_library.find('\0') != std::string::npos) {
        fail(EDGECC_ERROR_BUNDLE, path + ": cuda.runtime_library '" + cuda.runtime_library +
             "' must be a library name the system resolves (libcudart.so.13), not a path");
      }
    }
    const auto records = file_records(obj, path);
    std::vector<std::string> device_runtime_paths;
    auto device_runtimes = obj.find(ffi::String("device_runtime_libraries"));
    if (device_runtimes != obj.end()) {
      for (const ffi::Any& lib : as_list((*device_runtimes).second, path + ": device_runtime_libraries")) {
        std::string name = as_string(lib, path + ": device_runtime_libraries[]");
        device_runtime_paths.push_back(checked_file(name, "the device runtime", records));
      }
    }
    library_path = checked_file(as_string(field(obj, "library", path), path + ": library"), "the model library", records);
    if (cuda.needed) check_cuda(cuda);
    for (const std::string& runtime : device_runtime_paths) load_device_runtime(runtime);
  }

  void parse_tensors(const ffi::Map<ffi::Any, ffi::Any>& obj, const char* key, const std::string& path,
                     std::vector<TensorSpec>* specs) {
    auto list = as_list(field(obj, key, path), path + ": " + key);
    for (size_t i = 0; i < list.size(); ++i) {
      specs->push_back(parse_tensor(list[i], path + ": " + key + "[" + std::to_string(i) + "]"));
      for (size_t j = 0; j < i; ++j) {
        if ((*specs)[j].name == specs->back().name) {
          fail(EDGECC_ERROR_BUNDLE, path + ": two " + key + " are named '" + specs->back().name + "'");
        }
      }
    }
  }

  // model.json "files": {"model.so": {"bytes": N, "sha256": "..."}, ...}, written by edgecc deploy.
  static std::vector<std::pair<std::string, FileRecord>> file_records(const ffi::Map<ffi::Any, ffi::Any>& obj,
                                                                      const std::string& path) {
    std::vector<std::pair<std::string, FileRecord>> records;
    auto files = obj.find(ffi::String("files"));
    if (files == obj.end()) return records;
    for (const auto& entry : as_object((*files).second, path + ": files")) {
      std::string name = as_string(entry.first, path + ": files key");
      auto record = as_object(entry.second, path + ": files['" + name + "']");
      int64_t bytes = as_int(field(record, "bytes", path), path + ": files['" + name + "'].bytes");
      std::string sha = as_string(field(record, "sha256", path), path + ": files['" + name + "'].sha256");
      if (bytes < 0 || sha.size() != 64 || sha.find_first_not_of("0123456789abcdef") != std::string::npos) {
        fail(EDGECC_ERROR_BUNDLE, path + ": files['" + name + "'] needs bytes >= 0 and a SHA-256 of 64 hex digits");
      }
      records.emplace_back(name, FileRecord{static_cast<uint64_t>(bytes), sha});
    }
    return records;
  }

  std::string checked_file(const std::string& name, const std::string& what,
                           const std::vector<std::pair<std::string, FileRecord>>& records) const {
    const std::string path = inside_bundle(dir, name, what);
    for (const auto& record : records) {
      if (record.first == name) {
        check_recorded_file(path, name, record.second);
        return path;
      }
    }
    fail(EDGECC_ERROR_BUNDLE, dir + "/model.json records no size and SHA-256 for " + name +
         " (\"files\"); deploy the bundle again with this edgecc");
  }

  std::string library_path;

  void choose_threads(const edgecc_open_options* options) {
    // More threads than a few per core only wait on each other: 64 on 2 cores ran 0.3 s as 58 s, and
    // 1,000 hung. A count the caller chose is refused past that; the bundle's own (the board's cores)
    // is kept as deployed.
    const long online = sysconf(_SC_NPROCESSORS_ONLN);
    const long limit = kThreadsPerCore * (online > 0 ? online : 1);
    const char* env = std::getenv("TVM_NUM_THREADS");
    long chosen = 0;
    std::string source;
    if (options && options->num_threads > 0) {
      chosen = options->num_threads;
      source = "the threads option";
    } else if (env && *env) {
      char* end = nullptr;
      errno = 0;
      chosen = std::strtol(env, &end, 10);
      if (errno || *end || chosen < 1) {
        fail(EDGECC_ERROR_ARGUMENT, std::string("TVM_NUM_THREADS='") + env + "' is not a whole number of at least 1");
      }
      source = "TVM_NUM_THREADS";
    }
    if (chosen > limit) {
      fail(EDGECC_ERROR_ARGUMENT, std::to_string(chosen) + " threads (" + source + ") is more than " +
                                      std::to_string(limit) + " (" + std::to_string(kThreadsPerCore) +
                                      " per core of this machine's " + std::to_string(online) +
                                      "); extra threads only wait on each other");
    }
    if (chosen > 0) threads = static_cast<int>(chosen);
    if (threads < 1) threads = 1;
    if (!g_pool_started) setenv("TVM_NUM_THREADS", std::to_string(threads).c_str(), 1);
  }

  void load() {
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
