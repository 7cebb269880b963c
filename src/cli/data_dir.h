// Where Etna keeps its data (vector store, document collections, conversations), shared by
// every subcommand that takes --data.
#pragma once
#include <filesystem>
#include <string>

namespace etna::cli {

// `arg` when given, else $ETNA_DATA, else $XDG_DATA_HOME/etna, else ~/.local/share/etna.
// Throws etna::Error(invalid_argument) when none of them is set.
std::filesystem::path data_dir(const std::string& arg);

}  // namespace etna::cli
