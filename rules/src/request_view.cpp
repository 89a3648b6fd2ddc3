#include "crawlgate/rules/request_view.h"

namespace crawlgate {

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
