#include "crawlgate/rules/request_view.h"

namespace crawlgate {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    unsigned char x = static_cast<unsigned char>(a[i]);
    unsigned char y = static_cast<unsigned char>(b[i]);
    if (x != y && (x | 0x20) != (y | 0x20)) return false;
    if (x != y && !((x | 0x20) >= 'a' && (x | 0x20) <= 'z')) return false;
  }
  return true;
}

std::string_view RequestView::header(std::string_view name) const {
  for (const HeaderField& field : headers) {
    if (iequals(field.name, name)) return field.value;
  }
  return {};
}

bool RequestView::has_header(std::string_view name) const {
  for (const HeaderField& field : headers) {
    if (iequals(field.name, name)) return true;
  }
  return false;
}

std::string_view RequestView::path() const {
  std::size_t query = target.find('?');
  return query == std::string_view::npos ? target : target.substr(0, query);
}

}  // namespace crawlgate
