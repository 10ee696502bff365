#include "table.h"

#include <algorithm>
#include <cstddef>
#include <utility>

#include "taskring/base/assert.h"

namespace taskring::cli {

Table::Table(std::vector<std::string> header, std::string align) : align_(std::move(align)) {
  TASKRING_ASSERT(align_.size() == header.size());
  rows_.push_back(std::move(header));
}

void Table::add(std::vector<std::string> row) {
  TASKRING_ASSERT(row.size() == rows_.front().size());
  rows_.push_back(std::move(row));
}

std::string Table::render() const {
  const std::size_t columns = rows_.front().size();
  std::vector<std::size_t> width(columns, 0);
  for (const auto& row : rows_) {
    for (std::size_t c = 0; c < columns; ++c) width[c] = std::max(width[c], row[c].size());
  }
  std::string out;
  for (const auto& row : rows_) {
    std::string line;
    for (std::size_t c = 0; c < columns; ++c) {
      const std::string& cell = row[c];
      const std::size_t pad = width[c] - cell.size();
      if (c != 0) line += "  ";
      if (align_[c] == 'r') {
        line.append(pad, ' ');
        line += cell;
      } else {
        line += cell;
        if (c + 1 < columns) line.append(pad, ' ');
      }
    }
    out += line + "\n";
  }
  return out;
}

}  // namespace taskring::cli
