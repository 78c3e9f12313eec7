# fastfeed._torch_views (csrc/python/torch_views.cpp): row views of torch tensors made without the
# dispatcher, half the cost of torch's unbind() for an epoch of tiny batches. It compiles
# against the torch this build's Python can import, and only that torch version may use it
# (views.py checks), so AUTO builds it when torch is importable and skips it otherwise: pip's
# isolated builds have no torch, and views.py then falls back to unbind(). ON insists.
set(FASTFEED_TORCH_VIEWS AUTO CACHE STRING "Build fastfeed._torch_views: AUTO (when torch imports), ON or OFF")
set_property(CACHE FASTFEED_TORCH_VIEWS PROPERTY STRINGS AUTO ON OFF)

set(_torch_views_buildable OFF)
if(NOT FASTFEED_TORCH_VIEWS STREQUAL "OFF")
  # Where torch is, its version, and the libstdc++ string ABI it was built with (ours must match).
  execute_process(
    COMMAND "${Python_EXECUTABLE}" -c
      "import os, torch; print(os.path.dirname(torch.__file__)); print(torch.__version__); print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"
    OUTPUT_VARIABLE _torch_info RESULT_VARIABLE _torch_rc ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
  # torch's headers need C++20 since 2.10.
  if(_torch_rc EQUAL 0 AND "cxx_std_20" IN_LIST CMAKE_CXX_COMPILE_FEATURES)
    string(REPLACE "\n" ";" _torch_info "${_torch_info}")
    list(GET _torch_info 0 _torch_dir)
    list(GET _torch_info 1 _torch_version)
    list(GET _torch_info 2 _torch_cxx11_abi)
    # The libraries the view code calls into: TensorImpl (c10) and THPVariable_Wrap (torch_python).
    find_library(_torch_c10 c10 PATHS "${_torch_dir}/lib" NO_DEFAULT_PATH)
    find_library(_torch_python torch_python PATHS "${_torch_dir}/lib" NO_DEFAULT_PATH)
    if(_torch_c10 AND _torch_python)
      set(_torch_views_buildable ON)
    endif()
  endif()
endif()

if(_torch_views_buildable)
  Python_add_library(_torch_views MODULE WITH_SOABI csrc/python/torch_views.cpp)
  set_target_properties(_torch_views PROPERTIES CXX_STANDARD 20)
  # SYSTEM keeps torch's header warnings out of ours.
  target_include_directories(_torch_views SYSTEM PRIVATE "${_torch_dir}/include")
  target_compile_definitions(_torch_views PRIVATE
    FASTFEED_TORCH_VERSION="${_torch_version}" _GLIBCXX_USE_CXX11_ABI=${_torch_cxx11_abi})
  target_compile_options(_torch_views PRIVATE -O2 -Wall -Wextra)
  # No rpath: the module is imported after torch, whose libraries the loader then finds by name.
  target_link_libraries(_torch_views PRIVATE "${_torch_python}" "${_torch_c10}")
  install(TARGETS _torch_views DESTINATION fastfeed)
  message(STATUS "fastfeed: torch views ON (torch ${_torch_version})")
elseif(FASTFEED_TORCH_VIEWS STREQUAL "ON")
  message(FATAL_ERROR "FASTFEED_TORCH_VIEWS=ON needs torch importable by ${Python_EXECUTABLE} and a C++20 compiler")
else()
  message(STATUS "fastfeed: torch views OFF (no torch at build time, or no C++20 compiler; views fall back to unbind)")
endif()
