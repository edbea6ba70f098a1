#include "tools/dump/record.h"

#include "tools/json_writer.h"

namespace stablefs {

Record& Record::add(std::string key, uint64_t v) {
  fields_.push_back({std::move(key), v});
  return *this;
}
Record& Record::add(std::string key, int64_t v) {
  fields_.push_back({std::move(key), v});
  return *this;
}
Record& Record::add(std::string key, std::string v) {
  fields_.push_back({std::move(key), std::move(v)});
  return *this;
}
Record& Record::add_bool(std::string key, bool v) {
  fields_.push_back({std::move(key), Boolean{v}});
  return *this;
}
Record& Record::add_record(std::string key) {
  fields_.push_back({std::move(key), std::vector<Record>(1), true});
  return std::get<std::vector<Record>>(fields_.back().value)[0];
}
std::vector<Record>& Record::add_list(std::string key) {
  fields_.push_back({std::move(key), std::vector<Record>()});
  return std::get<std::vector<Record>>(fields_.back().value);
}

namespace {

// The text of a scalar field (lists are rendered by the caller).
struct ScalarText {
  std::string operator()(uint64_t v) const { return std::to_string(v); }
  std::string operator()(int64_t v) const { return std::to_string(v); }
  std::string operator()(const std::string& v) const { return v; }
  template <class B>
  std::string operator()(const B& b) const
    requires requires { b.v; }
  {
    return b.v ? "yes" : "no";
  }
  std::string operator()(const std::vector<Record>&) const { return ""; }
};

}  // namespace

void Record::print_row(FILE* out, int indent) const {
  std::fprintf(out, "%*s", indent, "");
  const char* sep = "";
  for (const Field& f : fields_) {
    std::fprintf(out, "%s%s=%s", sep, f.key.c_str(), std::visit(ScalarText{}, f.value).c_str());
    sep = "  ";
  }
  std::fputc('\n', out);
}

void Record::print_text(FILE* out, int indent) const {
  for (const Field& f : fields_) {
    const auto* list = std::get_if<std::vector<Record>>(&f.value);
    if (list && f.nested) {
      std::fprintf(out, "%*s%s:\n", indent, "", f.key.c_str());
      (*list)[0].print_text(out, indent + 2);
    } else if (list) {
      std::fprintf(out, "%*s%s: %zu\n", indent, "", f.key.c_str(), list->size());
      for (const Record& row : *list) row.print_row(out, indent + 2);
    } else {
      std::fprintf(out, "%*s%-26s %s\n", indent, "", (f.key + ":").c_str(),
                   std::visit(ScalarText{}, f.value).c_str());
    }
  }
}

void Record::print_json_into(JsonWriter& j) const {
  j.begin_object();
  for (const Field& f : fields_) {
    j.key(f.key);
    if (const auto* list = std::get_if<std::vector<Record>>(&f.value)) {
      if (f.nested) {
        (*list)[0].print_json_into(j);
        continue;
      }
      j.begin_array();
      for (const Record& row : *list) row.print_json_into(j);
      j.end_array();
    } else if (const auto* b = std::get_if<Boolean>(&f.value)) {
      j.value(b->v);
    } else if (const auto* u = std::get_if<uint64_t>(&f.value)) {
      j.value(*u);
    } else if (const auto* i = std::get_if<int64_t>(&f.value)) {
      j.value(*i);
    } else {
      j.value(std::get<std::string>(f.value));
    }
  }
  j.end_object();
}

void Record::print_json(FILE* out) const {
  JsonWriter j(out);
  print_json_into(j);
  j.newline();
}

std::string hex64(uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)v);
  return buf;
}

}  // namespace stablefs
