// Byte-level BPE encoder (GPT-2 style). Work in progress: full implementation follows.
#include "etna/base/error.h"
#include "etna/tokenizer/encoder.h"

namespace etna::tokenizer {

std::unique_ptr<Encoder> make_bpe_encoder(const Vocab&) {
  fail(ErrorKind::unsupported, "BPE tokenizer not implemented yet");
}

}  // namespace etna::tokenizer
