#include "python/chunk_chain.hpp"

#include <pythread.h>

namespace fastfeed::python {

namespace {

// ChunkChain(source): the items of the iterators that `source` yields, in order, like
// itertools.chain.from_iterable(source), and as cheap per item: the active chunk's own
// tp_iternext, called from C.
//
// Unlike itertools.chain it may be shared by threads. Advancing `source` runs Python code (a
// generator that waits for the core's workers without the GIL); chain lets a second thread in
// meanwhile, which either hits "generator already executing" (and chain, taking that for the
// end of its source, ends the epoch early for every thread) or, if the source waits for it
// instead, overwrites the chunk the first thread just installed (its batches are lost). Here
// one thread at a time advances `source`, under `fetch_lock`, and installs its chunk only while
// none is active; the others wait for the lock without the GIL and then look again. Every item
// goes to exactly one caller, in order, none lost.
//
// When advancing `source` raises, that thread gets the exception and, as after a generator
// that raised, later next() calls from it end the iteration; next() from any other thread
// raises RuntimeError naming the exception instead, so that no thread sharing the epoch takes
// its early end for the end of the epoch.
struct ChunkChain {
  PyObject_HEAD
  PyObject* source;   // the iterator of chunks; null once it ended (or raised)
  PyObject* active;   // the chunk being handed out; null between chunks
  PyObject* failure;  // set by fail(): every later next() raises RuntimeError(failure)
  PyObject* error;    // repr() of what advancing `source` raised, or null
  unsigned long error_thread;  // the thread that got it
  PyThread_type_lock fetch_lock;
  unsigned long fetcher;  // the thread advancing `source` (0: none)
};

ChunkChain* self_of(PyObject* op) { return reinterpret_cast<ChunkChain*>(op); }

PyObject* chain_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
  PyObject* iterable = nullptr;
  static const char* names[] = {"source", nullptr};
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O:ChunkChain", const_cast<char**>(names), &iterable)) {
    return nullptr;
  }
  PyObject* source = PyObject_GetIter(iterable);
  if (source == nullptr) return nullptr;
  auto* self = self_of(type->tp_alloc(type, 0));
  if (self == nullptr) {
    Py_DECREF(source);
    return nullptr;
  }
  self->source = source;
  self->fetch_lock = PyThread_allocate_lock();
  if (self->fetch_lock == nullptr) {
    Py_DECREF(self);
    return PyErr_NoMemory();
  }
  return reinterpret_cast<PyObject*>(self);
}

int chain_traverse(PyObject* op, visitproc visit, void* arg) {
  ChunkChain* self = self_of(op);
  Py_VISIT(Py_TYPE(op));
  Py_VISIT(self->source);
  Py_VISIT(self->active);
  Py_VISIT(self->failure);
  Py_VISIT(self->error);
  return 0;
}

int chain_clear(PyObject* op) {
  ChunkChain* self = self_of(op);
  Py_CLEAR(self->source);
  Py_CLEAR(self->active);
  Py_CLEAR(self->failure);
  Py_CLEAR(self->error);
  return 0;
}

void chain_dealloc(PyObject* op) {
  PyTypeObject* type = Py_TYPE(op);
  PyObject_GC_UnTrack(op);
  chain_clear(op);
  if (self_of(op)->fetch_lock != nullptr) PyThread_free_lock(self_of(op)->fetch_lock);
  type->tp_free(op);
  Py_DECREF(type);
}

// Keeps repr() of the exception being raised, for the other threads; the exception stays set.
void remember_error(ChunkChain* self, unsigned long thread) {
  PyObject *type, *value, *traceback;
  PyErr_Fetch(&type, &value, &traceback);
  PyErr_NormalizeException(&type, &value, &traceback);
  PyObject* text = value != nullptr ? PyObject_Repr(value) : nullptr;
  if (text == nullptr) {
    PyErr_Clear();
    text = PyUnicode_FromString("an exception");
    if (text == nullptr) PyErr_Clear();
  }
  Py_XSETREF(self->error, text);
  self->error_thread = thread;
  PyErr_Restore(type, value, traceback);
}

// Advances `source` by one chunk and makes it the active one, unless another thread is at it:
// then waits for that thread (without the GIL). -1: an error is set; 0: look again.
int fetch(ChunkChain* self) {
  const unsigned long me = PyThread_get_thread_ident();
  if (!PyThread_acquire_lock(self->fetch_lock, NOWAIT_LOCK)) {
    if (self->fetcher == me) {
      PyErr_SetString(PyExc_RuntimeError, "an epoch's iterator was asked for a batch while making its next ones");
      return -1;
    }
    for (;;) {  // in slices, so that Ctrl-C reaches a waiting main thread
      PyLockStatus got;
      Py_BEGIN_ALLOW_THREADS
      got = PyThread_acquire_lock_timed(self->fetch_lock, 50000, 0);
      Py_END_ALLOW_THREADS
      if (got == PY_LOCK_ACQUIRED) {
        PyThread_release_lock(self->fetch_lock);
        return 0;
      }
      if (PyErr_CheckSignals() < 0) return -1;
    }
  }
  int result = 0;
  if (self->active == nullptr && self->source != nullptr && self->failure == nullptr) {
    self->fetcher = me;
    PyObject* source = self->source;
    Py_INCREF(source);
    PyObject* chunk = PyIter_Next(source);
    Py_DECREF(source);
    PyObject* active = chunk == nullptr ? nullptr : PyObject_GetIter(chunk);
    Py_XDECREF(chunk);
    if (active != nullptr) {
      PyObject* old = self->active;  // (null: only the holder of fetch_lock installs a chunk)
      self->active = active;
      Py_XDECREF(old);
    } else {
      // The end, or an error: no chunk comes after either (a generator that raised is done).
      if (PyErr_Occurred()) {
        result = -1;
        remember_error(self, me);
      }
      PyObject* old = self->source;
      self->source = nullptr;
      Py_XDECREF(old);
    }
    self->fetcher = 0;
  }
  PyThread_release_lock(self->fetch_lock);
  return result;
}

PyObject* chain_next(PyObject* op) {
  ChunkChain* self = self_of(op);
  for (;;) {
    PyObject* active = self->active;
    if (active != nullptr) {
      Py_INCREF(active);  // another thread may replace it while a Python-level chunk runs
      PyObject* item = Py_TYPE(active)->tp_iternext(active);
      if (item != nullptr) {
        Py_DECREF(active);
        return item;
      }
      if (PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_StopIteration)) {
          Py_DECREF(active);
          return nullptr;
        }
        PyErr_Clear();
      }
      if (self->active == active) {  // exhausted: the next chunk's turn
        self->active = nullptr;
        Py_DECREF(active);
      }
      Py_DECREF(active);
      continue;
    }
    if (self->failure != nullptr) {
      PyErr_SetObject(PyExc_RuntimeError, self->failure);
      return nullptr;
    }
    if (self->source == nullptr) {
      if (self->error != nullptr && PyThread_get_thread_ident() != self->error_thread) {
        PyErr_Format(PyExc_RuntimeError, "the epoch ended early: another thread sharing its iterator met %U",
                     self->error);
      }
      return nullptr;
    }
    if (fetch(self) < 0) return nullptr;
  }
}

PyObject* chain_fail(PyObject* op, PyObject* message) {
  ChunkChain* self = self_of(op);
  if (!PyUnicode_Check(message)) {
    PyErr_SetString(PyExc_TypeError, "ChunkChain.fail: message must be a str");
    return nullptr;
  }
  // Over already: it ends as it would have. Failed already: the first reason stands.
  if (self->source == nullptr || self->failure != nullptr) Py_RETURN_NONE;
  Py_INCREF(message);
  Py_XSETREF(self->failure, message);
  Py_CLEAR(self->active);
  Py_RETURN_NONE;
}

PyMethodDef chain_methods[] = {
    {"fail", chain_fail, METH_O,
     "fail(message): every later next() raises RuntimeError(message); the chunk under way is dropped, and "
     "the source is never advanced again (a forked child does this to its parent's epochs). No effect once "
     "the iteration ended or failed."},
    {nullptr, nullptr, 0, nullptr},
};

PyType_Slot chain_slots[] = {
    {Py_tp_doc, const_cast<char*>("ChunkChain(source): the items of the iterators `source` yields, in order, "
                                  "handed out from C; threads may share it (one at a time advances `source`).")},
    {Py_tp_new, reinterpret_cast<void*>(chain_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(chain_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(chain_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(chain_clear)},
    {Py_tp_iter, reinterpret_cast<void*>(PyObject_SelfIter)},
    {Py_tp_iternext, reinterpret_cast<void*>(chain_next)},
    {Py_tp_methods, chain_methods},
    {0, nullptr},
};

PyType_Spec chain_spec = {
    "fastfeed._core.ChunkChain",
    sizeof(ChunkChain),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    chain_slots,
};

}  // namespace

void add_chunk_chain(py::module_& m) {
  PyObject* type = PyType_FromSpec(&chain_spec);
  if (type == nullptr) throw py::error_already_set();
  m.add_object("ChunkChain", py::reinterpret_steal<py::object>(type));
}

}  // namespace fastfeed::python
