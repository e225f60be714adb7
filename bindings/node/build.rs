//! Links the module as Node.js expects a native addon to be linked.

fn main() {
    napi_build::setup();
}
