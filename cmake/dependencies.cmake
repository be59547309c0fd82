# strata_dep_<name>: one target per library the modules link (see the top
# CMakeLists.txt, STRATA_STATIC_DEPS): the static archive with the
# pkg-config target's include directories, or the shared library.

# strata_static_dep(NAME PKG_PREFIX ARCHIVE [EXTRA_LIBS...])
function(strata_static_dep name prefix archive)
  add_library(strata_dep_${name} INTERFACE)
  if(STRATA_STATIC_DEPS)
    find_library(STRATA_${name}_ARCHIVE NAMES ${archive} REQUIRED)
    target_include_directories(strata_dep_${name} SYSTEM INTERFACE ${${prefix}_INCLUDE_DIRS})
    target_compile_options(strata_dep_${name} INTERFACE ${${prefix}_CFLAGS_OTHER})
    target_link_libraries(strata_dep_${name} INTERFACE ${STRATA_${name}_ARCHIVE} ${ARGN})
  else()
    target_link_libraries(strata_dep_${name} INTERFACE PkgConfig::${prefix})
  endif()
endfunction()

strata_static_dep(fuse3 FUSE3 libfuse3.a Threads::Threads ${CMAKE_DL_LIBS})
strata_static_dep(lmdb LMDB liblmdb.a Threads::Threads)
strata_static_dep(xxhash XXHASH libxxhash.a)

strata_static_dep(nettle NETTLE libnettle.a)

# spdlog and fmt: Debian's spdlog::spdlog_header_only still links the shared
# libfmt, so the header-only form is spelled out here.
add_library(strata_dep_fmt INTERFACE)
add_library(strata_dep_spdlog INTERFACE)
if(STRATA_STATIC_DEPS)
  target_link_libraries(strata_dep_fmt INTERFACE fmt::fmt-header-only)
  get_target_property(STRATA_SPDLOG_INCLUDES spdlog::spdlog_header_only
                      INTERFACE_INCLUDE_DIRECTORIES)
  target_include_directories(strata_dep_spdlog SYSTEM INTERFACE ${STRATA_SPDLOG_INCLUDES})
  target_compile_definitions(strata_dep_spdlog INTERFACE SPDLOG_FMT_EXTERNAL)
  target_link_libraries(strata_dep_spdlog INTERFACE strata_dep_fmt Threads::Threads)
else()
  target_link_libraries(strata_dep_fmt INTERFACE fmt::fmt)
  target_link_libraries(strata_dep_spdlog INTERFACE spdlog::spdlog)
endif()

# libstdc++ and libgcc linked in too, for the binaries whose start time
# counts (strata, strata-overlay). Not strata-archive: libarchive loads ICU,
# which brings the shared libstdc++ anyway.
function(strata_static_runtime target)
  if(STRATA_STATIC_DEPS)
    target_link_options(${target} PRIVATE -static-libstdc++ -static-libgcc)
  endif()
endfunction()
