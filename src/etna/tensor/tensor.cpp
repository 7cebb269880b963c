// The public tensor functions: argument checks, then the active kernel table.
#include "etna/tensor/tensor.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "etna/base/cpu_features.h"
#include "etna/base/error.h"
#include "etna/base/thread_pool.h"
#include "etna/tensor/kernels.h"

namespace etna::tensor {
namespace {

const TypeKernels& kernels_or_throw(GgmlType type) {
  const TypeKernels* k = find_kernels(type);
  if (!k) fail(ErrorKind::unsupported, "tensor type {} is not supported yet", gguf::ggml_type_name(type));
  return *k;
}

void check_length(const TypeKernels& k, int64_t n, const char* what) {
  if (n < 0 || n % k.block_size != 0)
    fail(ErrorKind::invalid_argument, "{}: {} elements is not a multiple of the {} block size {}", what, n,
         gguf::ggml_type_name(k.type), k.block_size);
}

size_t bytes_for(const TypeKernels& k, int64_t n) {
  return static_cast<size_t>(n / k.block_size) * k.block_bytes;
}

}  // namespace

bool is_supported(GgmlType type) { return find_kernels(type) != nullptr; }

GgmlType vec_dot_type(GgmlType type) { return kernels_or_throw(type).vec_dot_type; }

size_t row_bytes(GgmlType type, int64_t n) {
  const TypeKernels& k = kernels_or_throw(type);
  check_length(k, n, "row_bytes");
  return bytes_for(k, n);
}

void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n) {
  const TypeKernels& k = kernels_or_throw(type);
  check_length(k, n, "dequantize_row");
  k.dequantize(src, dst, n);
}

void quantize_row(GgmlType type, const float* src, void* dst, int64_t n) {
  const TypeKernels& k = kernels_or_throw(type);
  if (!k.quantize) fail(ErrorKind::unsupported, "quantising to {} is not supported", gguf::ggml_type_name(type));
  check_length(k, n, "quantize_row");
  k.quantize(src, dst, n);
}

float vec_dot(GgmlType type, int64_t n, const void* weight_row, const void* activation_row) {
  const TypeKernels& k = kernels_or_throw(type);
  check_length(k, n, "vec_dot");
  return k.vec_dot(n, weight_row, activation_row);
}

namespace {

std::mutex g_pool_mutex;
std::shared_ptr<base::ThreadPool> g_pool;  // guarded by g_pool_mutex; users hold a copy

std::shared_ptr<base::ThreadPool> pool() {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (!g_pool) g_pool = std::make_shared<base::ThreadPool>(base::physical_core_count());
  return g_pool;
}

// Below this many multiply-adds a matmul runs on the calling thread: waking the pool costs
// a few microseconds, about what one core does in that time.
constexpr int64_t kMinParallelWork = int64_t{1} << 17;
// Rows per task: a multiple of the tile height, small enough to balance two busy cores.
constexpr int64_t kRowsPerTask = 16;

}  // namespace

void set_num_threads(int n) {
  if (n < 1) n = base::physical_core_count();
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (g_pool && g_pool->size() == n) return;
  g_pool = std::make_shared<base::ThreadPool>(n);
}

int num_threads() { return pool()->size(); }

void parallel_for(int64_t n_tasks, int64_t work, const std::function<void(int64_t)>& fn) {
  if (n_tasks > 1 && work >= kMinParallelWork) {
    pool()->run(n_tasks, fn);
  } else {
    for (int64_t i = 0; i < n_tasks; ++i) fn(i);
  }
}

std::string active_kernels_name() {
  const KernelTable& t = active_kernel_table();
  std::string name = kernel_table_name(t);
  if (name == "avx512" && base::cpu_features().avx512vnni) name += "+vnni";
  return name;
}

namespace {

// Checks one matrix of a matmul; false when there is nothing to compute.
bool check_matmul(const Matrix& w, const TypeKernels& k, int64_t n_tokens) {
  check_length(k, w.cols, "matmul");
  if (w.rows < 0 || n_tokens < 0) fail(ErrorKind::invalid_argument, "matmul: negative shape");
  if (w.row_bytes < bytes_for(k, w.cols))
    fail(ErrorKind::invalid_argument, "matmul: row_bytes {} is less than the {} bytes of {} {} elements", w.row_bytes,
         bytes_for(k, w.cols), w.cols, gguf::ggml_type_name(w.type));
  if (w.interleaved && (w.rows % kPackRows != 0 || !is_packable_type(w.type) || w.row_bytes != bytes_for(k, w.cols)))
    fail(ErrorKind::invalid_argument, "matmul: an interleaved {} matrix of {} rows is not a repack_rows layout",
         gguf::ggml_type_name(w.type), w.rows);
  return w.rows > 0 && n_tokens > 0;
}

// y rows r0..r1 of w times the converted activations (n_tokens rows of act_bytes at acts).
// For an interleaved matrix r0 and r1 are multiples of kPackRows.
void matmul_rows(const Matrix& w, const TypeKernels& k, const uint8_t* acts, size_t act_bytes, int64_t n_tokens,
                 float* y, int64_t r0, int64_t r1) {
  // Rows r0..r1 from row-major weight rows, row r at `rows + (r - r0) * w.row_bytes`.
  auto row_major = [&](const uint8_t* rows, int64_t r0, int64_t r1) {
    if (k.tile) {
      // Tiles of up to kTileRows rows x kTileTokens tokens: each weight block is decoded once
      // per tile and each activation block loaded once per tile.
      for (int64_t r = r0; r < r1; r += kTileRows) {
        const int nr = static_cast<int>(std::min<int64_t>(kTileRows, r1 - r));
        for (int64_t t = 0; t < n_tokens; t += kTileTokens) {
          const int nt = static_cast<int>(std::min<int64_t>(kTileTokens, n_tokens - t));
          k.tile(w.cols, rows + static_cast<size_t>(r - r0) * w.row_bytes, w.row_bytes,
                 acts + static_cast<size_t>(t) * act_bytes, act_bytes, y + t * w.rows + r, static_cast<size_t>(w.rows),
                 nr, nt);
        }
      }
    } else {
      // Rows outside, tokens inside: each weight row is read from memory once for all tokens.
      for (int64_t r = r0; r < r1; ++r) {
        const uint8_t* row = rows + static_cast<size_t>(r - r0) * w.row_bytes;
        for (int64_t t = 0; t < n_tokens; ++t)
          y[t * w.rows + r] = k.vec_dot(w.cols, row, acts + static_cast<size_t>(t) * act_bytes);
      }
    }
  };
  if (!w.interleaved) {
    row_major(w.row(r0), r0, r1);
    return;
  }
  // Interleaved groups of kPackRows rows. The 16-row tiles pay only where the arithmetic is
  // the limit. Streaming a matrix from memory for 1 or 2 tokens on an AMD EPYC (Zen 4) VM, one
  // group's single stream through 256-bit registers ran 1.3 to 1.4x faster than two groups'
  // streams through 512-bit ones (at 4 tokens 1.0x for Q4_0, 1.3x for Q8_0), while at 8 tokens
  // the 16-row tiles ran 1.4 to 1.6x faster.
  const size_t group_bytes = kPackRows * w.row_bytes;
  for (int64_t r = r0; r < r1; r += kPackRows) {
    const uint8_t* group = w.data + static_cast<size_t>(r / kPackRows) * group_bytes;
    if (k.packed_tile16 && n_tokens > kTileTokens && r + 2 * kPackRows <= r1) {  // two groups, 16 rows per register
      for (int64_t t = 0; t < n_tokens; t += kPackedTile16Tokens) {
        const int nt = static_cast<int>(std::min<int64_t>(kPackedTile16Tokens, n_tokens - t));
        k.packed_tile16(w.cols, group, group + group_bytes, acts + static_cast<size_t>(t) * act_bytes, act_bytes,
                        y + t * w.rows + r, static_cast<size_t>(w.rows), nt);
      }
      r += kPackRows;
    } else if (k.packed_tile) {
      for (int64_t t = 0; t < n_tokens; t += kTileTokens) {
        const int nt = static_cast<int>(std::min<int64_t>(kTileTokens, n_tokens - t));
        k.packed_tile(w.cols, group, acts + static_cast<size_t>(t) * act_bytes, act_bytes, y + t * w.rows + r,
                      static_cast<size_t>(w.rows), kPackRows, nt);
      }
    } else {
      // A kernel set without packed kernels (e.g. scalar): the group's rows restored first.
      thread_local std::vector<uint8_t> rows;
      rows.resize(group_bytes);
      unpack_group(w, r / kPackRows, rows.data());
      row_major(rows.data(), r, r + kPackRows);
    }
  }
}

// The matmuls of `outs` (same cols and activation type) on the same x, in one dispatch.
void matmul_same_input(const MatmulOut* outs, int count, const float* x, int64_t n_tokens) {
  const Matrix& w0 = *outs[0].w;
  const TypeKernels& k0 = kernels_or_throw(w0.type);
  const TypeKernels& act = kernels_or_throw(k0.vec_dot_type);
  check_length(act, w0.cols, "matmul activations");
  const size_t act_bytes = bytes_for(act, w0.cols);
  int64_t work = 0;
  for (int i = 0; i < count; ++i) work += outs[i].w->rows * w0.cols * n_tokens;
  std::shared_ptr<base::ThreadPool> threads = work >= kMinParallelWork ? pool() : nullptr;
  auto run = [&threads](int64_t n_tasks, const std::function<void(int64_t)>& fn) {
    if (threads && n_tasks > 1) {
      threads->run(n_tasks, fn);
    } else {
      for (int64_t i = 0; i < n_tasks; ++i) fn(i);
    }
  };

  // Convert every token's activations once (F32 weights use x as it is).
  const uint8_t* acts = reinterpret_cast<const uint8_t*>(x);
  thread_local std::vector<uint8_t> scratch;
  if (k0.vec_dot_type != GgmlType::F32) {
    scratch.resize(act_bytes * static_cast<size_t>(n_tokens));
    uint8_t* out = scratch.data();
    const int64_t tokens_per_task = 8;
    run((n_tokens + tokens_per_task - 1) / tokens_per_task, [&](int64_t task) {
      const int64_t end = std::min(n_tokens, (task + 1) * tokens_per_task);
      for (int64_t t = task * tokens_per_task; t < end; ++t)
        act.quantize(x + t * w0.cols, out + static_cast<size_t>(t) * act_bytes, w0.cols);
    });
    acts = scratch.data();
  }

  // Tasks of kRowsPerTask rows, the matrices' tasks one after another. Decode (one tile of
  // tokens) is memory-bound: each thread streams one contiguous range of the tasks, so the
  // hardware prefetchers run along a long stream instead of restarting every few rows, and a
  // thread done early takes tasks from the back of another's range (ThreadPool::run_ranges).
  // Larger batches are compute-bound and take the small tasks in order.
  constexpr int kMaxOuts = 4;
  int64_t first_task[kMaxOuts + 1];
  const TypeKernels* kern[kMaxOuts];
  first_task[0] = 0;
  for (int i = 0; i < count; ++i) {
    kern[i] = &kernels_or_throw(outs[i].w->type);
    first_task[i + 1] = first_task[i] + (outs[i].w->rows + kRowsPerTask - 1) / kRowsPerTask;
  }
  auto task = [&](int64_t task) {
    int i = 0;
    while (task >= first_task[i + 1]) ++i;
    const Matrix& w = *outs[i].w;
    const int64_t r0 = (task - first_task[i]) * kRowsPerTask, r1 = std::min(w.rows, r0 + kRowsPerTask);
    matmul_rows(w, *kern[i], acts, act_bytes, n_tokens, outs[i].y, r0, r1);
  };
  if (threads && n_tokens <= kTileTokens) {
    threads->run_ranges(first_task[count], task);
  } else {
    run(first_task[count], task);
  }
}

}  // namespace

void matmul(const Matrix& w, const float* x, int64_t n_tokens, float* y) {
  const MatmulOut out{&w, y};
  matmul_many(&out, 1, x, n_tokens);
}

void matmul_many(const MatmulOut* outs, int count, const float* x, int64_t n_tokens) {
  // Check everything first; then one dispatch per run of neighbours (at most 4) that can share
  // the converted activations.
  for (int i = 0; i < count; ++i) check_matmul(*outs[i].w, kernels_or_throw(outs[i].w->type), n_tokens);
  if (n_tokens <= 0) return;
  constexpr int kMaxOuts = 4;
  MatmulOut group[kMaxOuts];
  int n = 0;
  for (int i = 0; i <= count; ++i) {
    const bool joins = i < count && n > 0 && n < kMaxOuts && outs[i].w->cols == group[0].w->cols &&
                       kernels_or_throw(outs[i].w->type).vec_dot_type ==
                           kernels_or_throw(group[0].w->type).vec_dot_type;
    if (n > 0 && !joins) {
      matmul_same_input(group, n, x, n_tokens);
      n = 0;
    }
    if (i < count && outs[i].w->rows > 0) group[n++] = outs[i];
  }
}

}  // namespace etna::tensor
