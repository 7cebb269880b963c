// WordPiece encoder (BERT). Work in progress: full implementation follows.
#include "etna/base/error.h"
#include "etna/tokenizer/encoder.h"

namespace etna::tokenizer {

std::unique_ptr<Encoder> make_wpm_encoder(const Vocab&) {
  fail(ErrorKind::unsupported, "WordPiece tokenizer not implemented yet");
}

}  // namespace etna::tokenizer
