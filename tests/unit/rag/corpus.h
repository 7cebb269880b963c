// A small corpus of 30 documents on distinct topics, each with a question whose answer lies in it.
#pragma once
#include <string>
#include <vector>

namespace etna::rag::testing {

struct CorpusDoc {
  std::string name;      // file name
  std::string text;      // document body
  std::string question;  // answered by this document
};

inline const std::vector<CorpusDoc>& corpus() {
  static const std::vector<CorpusDoc> docs = {
      {"etna.txt", "Mount Etna is an active stratovolcano on the east coast of Sicily. Its eruptions are frequent and lava flows reach nearby villages.", "Which volcano erupts on Sicily?"},
      {"sourdough.txt", "Sourdough bread rises thanks to a starter culture of wild yeast and lactic acid bacteria, fed with flour and water.", "how does sourdough bread rise without commercial yeast"},
      {"tides.txt", "Ocean tides are caused mainly by the gravitational pull of the Moon, with a smaller contribution from the Sun.", "what causes ocean tides"},
      {"photosynthesis.txt", "Photosynthesis lets plants convert sunlight, carbon dioxide and water into glucose, releasing oxygen from chlorophyll in the leaves.", "how do plants make glucose from sunlight"},
      {"chess.txt", "In chess, castling moves the king two squares toward a rook, and the rook jumps over to the other side of the king.", "chess castling rule for the king and rook"},
      {"espresso.txt", "Espresso is brewed by forcing hot water under about nine bars of pressure through finely ground coffee.", "what pressure is used to brew espresso coffee"},
      {"tcp.txt", "TCP establishes a connection with a three-way handshake of SYN, SYN-ACK and ACK segments before data flows.", "TCP handshake segments"},
      {"penguins.txt", "Emperor penguins breed during the Antarctic winter; the males incubate the single egg on their feet for two months.", "which penguin incubates the egg on its feet in winter"},
      {"bicycle.txt", "A bicycle derailleur shifts the chain between sprockets of the cassette to change the gear ratio.", "how does a derailleur change bicycle gears"},
      {"glaciers.txt", "Glaciers form where snow accumulates over many years and compresses into dense ice that slowly flows downhill.", "how are glaciers formed from snow"},
      {"vaccines.txt", "Vaccines train the immune system by exposing it to an antigen, so memory cells respond quickly to later infection.", "how do vaccines train the immune system"},
      {"bees.txt", "Honey bees communicate the direction and distance of flowers to hive mates with the waggle dance.", "what dance do honey bees use to communicate"},
      {"rust.txt", "Iron rusts when it reacts with oxygen and moisture, forming hydrated iron oxide that flakes away.", "why does iron rust"},
      {"jazz.txt", "Jazz emerged in New Orleans in the early twentieth century, blending blues, ragtime and brass band traditions.", "where did jazz music originate"},
      {"compost.txt", "Compost piles need a balance of green nitrogen-rich material and brown carbon-rich material, plus air and moisture.", "what balance does a compost pile need"},
      {"lighthouse.txt", "A Fresnel lens lets a lighthouse project its beam far out to sea using concentric rings of prisms.", "which lens do lighthouses use"},
      {"marathon.txt", "The marathon distance of 42.195 kilometres was fixed at the 1908 London Olympics.", "how long is a marathon in kilometres"},
      {"sudoku.txt", "A sudoku grid has nine rows, nine columns and nine boxes, each containing the digits one to nine exactly once.", "sudoku rules for rows columns and boxes"},
      {"origami.txt", "Origami is the Japanese art of folding a single square sheet of paper into figures such as the crane.", "japanese paper folding art"},
      {"telescope.txt", "A reflecting telescope gathers light with a curved primary mirror instead of a lens, as Newton's design did.", "telescope that uses a mirror instead of a lens"},
      {"cheese.txt", "Cheese is made by curdling milk with rennet, separating curds from whey, then pressing and ageing the curds.", "how is cheese made from milk"},
      {"hurricanes.txt", "Hurricanes draw their energy from warm ocean water above about 26 degrees Celsius and weaken over land.", "where do hurricanes get their energy"},
      {"violin.txt", "A violin has four strings tuned in fifths: G, D, A and E, played with a bow strung with horsehair.", "how are violin strings tuned"},
      {"bonsai.txt", "Bonsai trees are kept small by pruning roots and branches and growing them in shallow containers.", "how are bonsai trees kept small"},
      {"eclipse.txt", "A total solar eclipse happens when the Moon passes between Earth and the Sun and completely covers the solar disk.", "what happens during a total solar eclipse"},
      {"sql.txt", "A SQL join combines rows from two tables using a related column, such as a foreign key matching a primary key.", "how does a SQL join combine tables"},
      {"knitting.txt", "Knitting builds fabric from interlocking loops of yarn using two needles, with knit and purl stitches.", "which stitches are used in knitting"},
      {"tea.txt", "Green tea and black tea come from the same plant, Camellia sinensis; black tea leaves are oxidised before drying.", "difference between green and black tea leaves"},
      {"submarine.txt", "Submarines dive by flooding ballast tanks with seawater and surface by blowing them out with compressed air.", "how do submarines dive and surface"},
      {"dna.txt", "DNA is a double helix of two strands held together by base pairs: adenine with thymine and guanine with cytosine.", "which base pairs hold the DNA double helix"},
  };
  return docs;
}

}  // namespace etna::rag::testing
