{
  # werror=true turns warnings into errors for this project's own builds
  # (npm run build:native); installs on users' machines, whose compilers may
  # be newer and warn about more, never fail on a warning.
  "variables": { "werror%": "false" },
  "targets": [
    {
      "target_name": "toa",
      "conditions": [
        ["OS=='linux'", {
          "sources": ["native/binding.cc", "native/socket_query.cc"],
          "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
          "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
          # -fno-sized-deallocation: sized operator delete needs CXXABI_1.3.9
          # (gcc 5); without it the binary loads on gcc 4.8's libstdc++
          # (RHEL/CentOS 7), as the README promises.
          "cflags_cc": ["-std=c++17", "-fvisibility=hidden", "-fno-sized-deallocation", "-Wall", "-Wextra"],
          "conditions": [["werror=='true'", { "cflags_cc": ["-Werror"] }]]
        }, {
          # TOA is Linux-only and the sources use Linux headers: elsewhere
          # (node-gyp run directly on macOS or Windows) there is nothing to build.
          "type": "none"
        }]
      ]
    },
    {
      # toa-bpf: the eBPF backend's loader (native/bpf/loader.c). An
      # executable, because Debian's libbpf.a and libelf.a are not built with
      # -fPIC and so cannot go into a .node. Built only where those are
      # installed (libbpf-dev, libelf-dev, zlib1g-dev): elsewhere the addon
      # still builds, and `node-toa bpf` says the loader is missing.
      # Cross builds pass -Dbpf_libdir=<the target's libraries>.
      "target_name": "toa-bpf",
      "type": "executable",
      "variables": {
        "bpf_libdir%": "<!(node -e \"const fs=require('fs');const d=['/usr/lib/'+(process.arch==='arm64'?'aarch64':'x86_64')+'-linux-gnu','/usr/lib64','/usr/lib'].find((x)=>fs.existsSync(x+'/libbpf.a')&&fs.existsSync(x+'/libelf.a'));process.stdout.write(d||'none')\")"
      },
      "conditions": [
        ["OS=='linux' and bpf_libdir!='none'", {
          "sources": ["native/bpf/loader.c"],
          "cflags": ["-Wall", "-Wextra"],
          # glibc floor: see the end of loader.c
          "ldflags": ["-no-pie", "-Wl,--wrap=fstat,--wrap=__libc_start_main", "-Wl,--as-needed", "-L<(bpf_libdir)"],
          "libraries": ["-Wl,-Bstatic", "-lbpf", "-lelf", "-lz", "-Wl,-Bdynamic"],
          "conditions": [["werror=='true'", { "cflags": ["-Werror"] }]]
        }, {
          "type": "none"
        }]
      ]
    }
  ]
}
