//! The floor without the SDK: the fewest exports Envoy accepts for an HTTP filter. Envoy skips
//! every callback a module does not export, so a request costs a context creation and one
//! request-header callback. (Exports need `no_mangle`, which the workspace's lint calls unsafe;
//! this crate is bench-only and has no host calls.)

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut v: Vec<u8> = vec![0; size];
    let p = v.as_mut_ptr();
    std::mem::forget(v);
    p
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(_context_id: u32, _root_context_id: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_context_id: u32, _size: usize) -> bool {
    true
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(_context_id: u32, _size: usize) -> bool {
    true
}

/// Continue (0).
#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_context_id: u32, _n: usize, _end: u32) -> u32 {
    0
}
