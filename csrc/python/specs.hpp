// Specs (plain structs of the core: WindowSpec, OrderSpec, ...) as Python classes made by
// keyword only: Spec(batch_size=32, shuffle=True). Each field is a property bound with
// def_readwrite (or def_property where Python sees another type, a dtype name say), so the
// constructor needs no list of its own: it sets each keyword on a default instance through
// those properties, and the class's properties are the fields it accepts.
#pragma once
#include <pybind11/pybind11.h>

#include <algorithm>
#include <string>
#include <vector>

namespace fastfeed::python {

namespace py = pybind11;

// The fields of a bound spec class: its properties that can be set, in the order bound.
inline std::vector<std::string> spec_fields(const py::handle& type) {
  std::vector<std::string> out;
  const py::handle property = reinterpret_cast<PyObject*>(&PyProperty_Type);
  // The class's own namespace (a mappingproxy, in definition order), not dir(): that is sorted.
  for (const auto& item : type.attr("__dict__").attr("items")()) {
    const auto pair = py::reinterpret_borrow<py::tuple>(item);
    if (py::isinstance(pair[1], property) && !pair[1].attr("fset").is_none()) out.push_back(py::str(pair[0]));
  }
  return out;
}

inline std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// Sets each keyword on `self`, a default instance: ValueError for a keyword that is no field,
// TypeError naming the field for a value of the wrong type. The fast path is one setattr per
// keyword (a spec is made per iteration): the class's fields are listed only for an error.
inline void set_fields(py::object& self, const py::kwargs& kwargs) {
  for (const auto& item : kwargs) {
    try {
      py::setattr(self, item.first, item.second);
    } catch (py::error_already_set& e) {
      const py::handle type = py::type::handle_of(self);
      const std::string name = py::str(type.attr("__name__"));
      const std::string key = py::str(item.first);
      const std::vector<std::string> fields = spec_fields(type);
      if (std::find(fields.begin(), fields.end(), key) == fields.end()) {
        throw py::value_error(name + "() got an unknown keyword '" + key + "'; its fields are: " + joined(fields));
      }
      if (!e.matches(PyExc_TypeError)) throw;
      const std::string want = py::str(py::type::handle_of(self.attr(item.first)).attr("__name__"));
      throw py::type_error(name + "." + key + " must be " + want + ", got " + std::string(py::repr(item.second)));
    }
  }
}

// "Name(field=value, ...)": the call that makes an equal spec.
inline std::string spec_repr(const py::object& self) {
  const py::handle type = py::type::handle_of(self);
  std::string out = std::string(py::str(type.attr("__name__"))) + "(";
  bool first = true;
  for (const auto& f : spec_fields(type)) {
    out += (first ? "" : ", ") + f + "=" + std::string(py::repr(self.attr(f.c_str())));
    first = false;
  }
  return out + ")";
}

// Binds spec T as class `name`, constructed by keyword only (each field keeps its C++ default
// unless given). Add the fields to the returned class with def_readwrite or def_property.
template <class T>
py::class_<T> bind_spec(py::module_& m, const char* name) {
  py::class_<T> cls(m, name);
  cls.def(py::init([](const py::kwargs& kwargs) {
    py::object self = py::cast(T{});
    set_fields(self, kwargs);
    return self.cast<T>();
  }));
  cls.def("__repr__", &spec_repr);
  return cls;
}

}  // namespace fastfeed::python
