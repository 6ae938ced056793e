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
          "cflags_cc": ["-std=c++17", "-fvisibility=hidden", "-Wall", "-Wextra"],
          "conditions": [["werror=='true'", { "cflags_cc": ["-Werror"] }]]
        }, {
          # TOA is Linux-only and the sources use Linux headers: elsewhere
          # (node-gyp run directly on macOS or Windows) there is nothing to build.
          "type": "none"
        }]
      ]
    }
  ]
}
