{
  "targets": [
    {
      "target_name": "musig2_secp256k1",
      "sources": ["src/addon.c"],
      "libraries": ["-lsecp256k1"],
      "cflags": ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"],
      "defines": ["NAPI_VERSION=8", "_DEFAULT_SOURCE"]
    }
  ]
}
