// The name of a GGUF file's quantisation mix ("Q4_K_M", "F16", ...) from general.file_type,
// numbered as llama.cpp's llama_ftype; files without the key are named after the tensor type
// that holds most of their bytes.
#pragma once
#include <cstdint>
#include <string>

#include "etna/gguf/gguf_file.h"

namespace etna::gguf {

std::string file_type_name(const GgufFile& file);

// The name of llama_ftype number `file_type` ("Q4_K_M"); "file_type N" for numbers it does not know.
std::string file_type_name(int64_t file_type);

}  // namespace etna::gguf
