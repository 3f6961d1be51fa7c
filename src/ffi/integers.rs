//! One signed integer at a time: readN, writeN, incN, decN (N = 8, 16, 32, 64).
//! Native byte order, no alignment needed; incN/decN wrap and are atomic with
//! respect to every other operation on the area.
//!
//! Written out one function per name (no macro) so cbindgen sees every one.

use super::{boundary, put_opt, try_mut};
use crate::registry;

/// Reads the 8-bit signed integer at `pos` into `out`.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_read8(id: i32, pos: u64, out: *mut i8) -> i32 {
    boundary("sharedarea_read8", || {
        let area = registry::get(id)?;
        let v = area.read_int::<i8>(pos)?;
        // SAFETY: `out` is NULL or valid for writes during the call (the header's contract).
        *unsafe { try_mut(out, "out") }? = v;
        Ok(0)
    })
}

/// Writes a 8-bit signed integer at `pos`.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_write8(id: i32, pos: u64, value: i8) -> i32 {
    boundary("sharedarea_write8", || {
        registry::get(id)?.write_int::<i8>(pos, value)?;
        Ok(0)
    })
}

/// Adds `amount` (wrapping) to the 8-bit integer at `pos`; the new value goes to
/// `new_value` unless it is NULL.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_inc8(id: i32, pos: u64, amount: i8, new_value: *mut i8) -> i32 {
    boundary("sharedarea_inc8", || {
        let v = registry::get(id)?.add_int::<i8>(pos, amount)?;
        // SAFETY: `new_value` is NULL (not wanted) or valid for writes (the header's contract).
        unsafe { put_opt(new_value, v) };
        Ok(0)
    })
}

/// Subtracts `amount` (wrapping) from the 8-bit integer at `pos`; the new value
/// goes to `new_value` unless it is NULL.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_dec8(id: i32, pos: u64, amount: i8, new_value: *mut i8) -> i32 {
    boundary("sharedarea_dec8", || {
        let v = registry::get(id)?.sub_int::<i8>(pos, amount)?;
        // SAFETY: `new_value` is NULL (not wanted) or valid for writes (the header's contract).
        unsafe { put_opt(new_value, v) };
        Ok(0)
    })
}

/// Reads the 16-bit signed integer at `pos` into `out`.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_read16(id: i32, pos: u64, out: *mut i16) -> i32 {
    boundary("sharedarea_read16", || {
        let area = registry::get(id)?;
        let v = area.read_int::<i16>(pos)?;
        // SAFETY: `out` is NULL or valid for writes during the call (the header's contract).
        *unsafe { try_mut(out, "out") }? = v;
        Ok(0)
    })
}

/// Writes a 16-bit signed integer at `pos`.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_write16(id: i32, pos: u64, value: i16) -> i32 {
    boundary("sharedarea_write16", || {
        registry::get(id)?.write_int::<i16>(pos, value)?;
        Ok(0)
    })
}

/// Adds `amount` (wrapping) to the 16-bit integer at `pos`; the new value goes to
/// `new_value` unless it is NULL.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_inc16(
    id: i32,
    pos: u64,
    amount: i16,
    new_value: *mut i16,
) -> i32 {
    boundary("sharedarea_inc16", || {
        let v = registry::get(id)?.add_int::<i16>(pos, amount)?;
        // SAFETY: `new_value` is NULL (not wanted) or valid for writes (the header's contract).
        unsafe { put_opt(new_value, v) };
        Ok(0)
    })
}

/// Subtracts `amount` (wrapping) from the 16-bit integer at `pos`; the new value
/// goes to `new_value` unless it is NULL.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_dec16(
    id: i32,
    pos: u64,
    amount: i16,
    new_value: *mut i16,
) -> i32 {
    boundary("sharedarea_dec16", || {
        let v = registry::get(id)?.sub_int::<i16>(pos, amount)?;
        // SAFETY: `new_value` is NULL (not wanted) or valid for writes (the header's contract).
        unsafe { put_opt(new_value, v) };
        Ok(0)
    })
}

/// Reads the 32-bit signed integer at `pos` into `out`.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_read32(id: i32, pos: u64, out: *mut i32) -> i32 {
    boundary("sharedarea_read32", || {
        let area = registry::get(id)?;
        let v = area.read_int::<i32>(pos)?;
        // SAFETY: `out` is NULL or valid for writes during the call (the header's contract).
        *unsafe { try_mut(out, "out") }? = v;
        Ok(0)
    })
}

/// Writes a 32-bit signed integer at `pos`.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_write32(id: i32, pos: u64, value: i32) -> i32 {
    boundary("sharedarea_write32", || {
        registry::get(id)?.write_int::<i32>(pos, value)?;
        Ok(0)
    })
}

/// Adds `amount` (wrapping) to the 32-bit integer at `pos`; the new value goes to
/// `new_value` unless it is NULL.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_inc32(
    id: i32,
    pos: u64,
    amount: i32,
    new_value: *mut i32,
) -> i32 {
    boundary("sharedarea_inc32", || {
        let v = registry::get(id)?.add_int::<i32>(pos, amount)?;
        // SAFETY: `new_value` is NULL (not wanted) or valid for writes (the header's contract).
        unsafe { put_opt(new_value, v) };
        Ok(0)
    })
}

/// Subtracts `amount` (wrapping) from the 32-bit integer at `pos`; the new value
/// goes to `new_value` unless it is NULL.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_dec32(
    id: i32,
    pos: u64,
    amount: i32,
    new_value: *mut i32,
) -> i32 {
    boundary("sharedarea_dec32", || {
        let v = registry::get(id)?.sub_int::<i32>(pos, amount)?;
        // SAFETY: `new_value` is NULL (not wanted) or valid for writes (the header's contract).
        unsafe { put_opt(new_value, v) };
        Ok(0)
    })
}

/// Reads the 64-bit signed integer at `pos` into `out`.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_read64(id: i32, pos: u64, out: *mut i64) -> i32 {
    boundary("sharedarea_read64", || {
        let area = registry::get(id)?;
        let v = area.read_int::<i64>(pos)?;
        // SAFETY: `out` is NULL or valid for writes during the call (the header's contract).
        *unsafe { try_mut(out, "out") }? = v;
        Ok(0)
    })
}

/// Writes a 64-bit signed integer at `pos`.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_write64(id: i32, pos: u64, value: i64) -> i32 {
    boundary("sharedarea_write64", || {
        registry::get(id)?.write_int::<i64>(pos, value)?;
        Ok(0)
    })
}

/// Adds `amount` (wrapping) to the 64-bit integer at `pos`; the new value goes to
/// `new_value` unless it is NULL.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_inc64(
    id: i32,
    pos: u64,
    amount: i64,
    new_value: *mut i64,
) -> i32 {
    boundary("sharedarea_inc64", || {
        let v = registry::get(id)?.add_int::<i64>(pos, amount)?;
        // SAFETY: `new_value` is NULL (not wanted) or valid for writes (the header's contract).
        unsafe { put_opt(new_value, v) };
        Ok(0)
    })
}

/// Subtracts `amount` (wrapping) from the 64-bit integer at `pos`; the new value
/// goes to `new_value` unless it is NULL.
#[no_mangle]
pub unsafe extern "C" fn sharedarea_dec64(
    id: i32,
    pos: u64,
    amount: i64,
    new_value: *mut i64,
) -> i32 {
    boundary("sharedarea_dec64", || {
        let v = registry::get(id)?.sub_int::<i64>(pos, amount)?;
        // SAFETY: `new_value` is NULL (not wanted) or valid for writes (the header's contract).
        unsafe { put_opt(new_value, v) };
        Ok(0)
    })
}
