// A plain-text table for the CLI's human output: a header row and data rows,
// columns padded to their widest cell.
//
// Thread safety: a value; one Table per thread.
#pragma once

#include <string>
#include <vector>

namespace taskring::cli {

class Table {
 public:
  // `align` has one character per column: 'l' (left) or 'r' (right, for
  // numbers).
  Table(std::vector<std::string> header, std::string align);

  // Adds a row; it must have as many cells as the header.
  void add(std::vector<std::string> row);
  // The table, one line per row, each ending in '\n'; two spaces between
  // columns, no trailing spaces.
  std::string render() const;

 private:
  std::vector<std::vector<std::string>> rows_;  // rows_[0] is the header
  std::string align_;
};

}  // namespace taskring::cli
