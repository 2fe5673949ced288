//! Owner-only private key files on Windows, the counterpart of mode 0600.
//!
//! A key file is created (never re-permissioned after the fact, so no other
//! account can open it in between) with a protected DACL holding one entry:
//! full access for the user running devtls. "Protected" means the folder's
//! inheritable entries do not apply, so a key written into a shared folder
//! is still readable by that user alone. Administrators can still take
//! ownership, as root can read a 0600 file on Unix.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{FromRawHandle, RawHandle};
use std::path::Path;
use std::ptr;

use windows_sys::Win32::Foundation::{
    CloseHandle, LocalFree, GENERIC_READ, GENERIC_WRITE, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertSecurityDescriptorToStringSecurityDescriptorW, ConvertSidToStringSidW,
    ConvertStringSecurityDescriptorToSecurityDescriptorW, GetNamedSecurityInfoW, SDDL_REVISION_1,
    SE_FILE_OBJECT,
};
use windows_sys::Win32::Security::{
    GetTokenInformation, TokenUser, DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR,
    SECURITY_ATTRIBUTES, TOKEN_QUERY, TOKEN_USER,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, CREATE_NEW, FILE_ATTRIBUTE_NORMAL, FILE_SHARE_DELETE, FILE_SHARE_READ,
    FILE_SHARE_WRITE,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

/// The DACL of a private key file in SDDL: protected (`P`, nothing
/// inherited), one entry allowing (`A`) full file access (`FA`) to `sid`.
fn owner_only_dacl(sid: &str) -> String {
    format!("D:P(A;;FA;;;{sid})")
}

/// Creates `path` (it must not exist) for reading and writing, readable and
/// writable by the current user alone.
pub fn create_new(path: &Path) -> io::Result<File> {
    let sddl = wide(OsStr::new(&owner_only_dacl(&current_user_sid()?)));
    let name = wide(path.as_os_str());
    let mut descriptor: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: `sddl` is NUL-terminated; on success the descriptor is
    // allocated by the system and freed with LocalFree below.
    if unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl.as_ptr(),
            SDDL_REVISION_1,
            &mut descriptor,
            ptr::null_mut(),
        )
    } == 0
    {
        return Err(io::Error::last_os_error());
    }
    let attributes = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: descriptor,
        bInheritHandle: 0,
    };
    // SAFETY: `name` is NUL-terminated and `attributes` outlives the call.
    // The share modes are the ones std and tempfile use, so the staged file
    // can be renamed into place once closed.
    let handle: HANDLE = unsafe {
        CreateFileW(
            name.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
            &attributes,
            CREATE_NEW,
            FILE_ATTRIBUTE_NORMAL,
            ptr::null_mut(),
        )
    };
    let error = io::Error::last_os_error();
    // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW.
    unsafe { LocalFree(descriptor) };
    if handle == INVALID_HANDLE_VALUE {
        return Err(error);
    }
    // SAFETY: a valid handle we own from here on.
    Ok(unsafe { File::from_raw_handle(handle as RawHandle) })
}

/// Whether `path`'s DACL is exactly the owner-only one devtls writes.
pub fn is_owner_only(path: &Path) -> io::Result<bool> {
    Ok(dacl(path)? == owner_only_dacl(&current_user_sid()?))
}

/// `path`'s DACL in SDDL (`D:P(A;;FA;;;S-1-5-21-…)`).
pub fn dacl(path: &Path) -> io::Result<String> {
    let name = wide(path.as_os_str());
    let mut descriptor: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: `name` is NUL-terminated; only the descriptor is asked for,
    // and it is freed with LocalFree below.
    let status = unsafe {
        GetNamedSecurityInfoW(
            name.as_ptr(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION,
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            &mut descriptor,
        )
    };
    if status != 0 {
        return Err(io::Error::from_raw_os_error(status as i32));
    }
    let mut text: *mut u16 = ptr::null_mut();
    // SAFETY: `descriptor` came from GetNamedSecurityInfoW; `text` is
    // allocated by the system and freed with LocalFree.
    let ok = unsafe {
        ConvertSecurityDescriptorToStringSecurityDescriptorW(
            descriptor,
            SDDL_REVISION_1,
            DACL_SECURITY_INFORMATION,
            &mut text,
            ptr::null_mut(),
        )
    };
    let error = io::Error::last_os_error();
    // SAFETY: allocated by GetNamedSecurityInfoW.
    unsafe { LocalFree(descriptor) };
    if ok == 0 {
        return Err(error);
    }
    // SAFETY: a NUL-terminated string from the call above.
    Ok(unsafe { take_wide(text) })
}

/// The current user's SID as a string (`S-1-5-21-…`).
fn current_user_sid() -> io::Result<String> {
    let mut token: HANDLE = ptr::null_mut();
    // SAFETY: the pseudo-handle of this process; `token` is closed below.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let result = token_user_sid(token);
    // SAFETY: opened above.
    unsafe { CloseHandle(token) };
    result
}

fn token_user_sid(token: HANDLE) -> io::Result<String> {
    let mut len = 0u32;
    // SAFETY: a size query: no buffer, the needed length comes back in `len`.
    unsafe { GetTokenInformation(token, TokenUser, ptr::null_mut(), 0, &mut len) };
    if len == 0 {
        return Err(io::Error::last_os_error());
    }
    // u64s keep the buffer aligned for TOKEN_USER.
    let mut buf = vec![0u64; (len as usize).div_ceil(8)];
    // SAFETY: `buf` holds at least `len` bytes.
    if unsafe { GetTokenInformation(token, TokenUser, buf.as_mut_ptr().cast(), len, &mut len) } == 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: filled by GetTokenInformation(TokenUser) and aligned.
    let user = unsafe { &*(buf.as_ptr() as *const TOKEN_USER) };
    let mut text: *mut u16 = ptr::null_mut();
    // SAFETY: the SID points into `buf`, alive for the call.
    if unsafe { ConvertSidToStringSidW(user.User.Sid, &mut text) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a NUL-terminated string from the call above.
    Ok(unsafe { take_wide(text) })
}

/// Copies a system-allocated NUL-terminated UTF-16 string and frees it.
///
/// # Safety
/// `text` is NUL-terminated and was allocated with LocalAlloc.
unsafe fn take_wide(text: *mut u16) -> String {
    let mut n = 0;
    // SAFETY: the caller promises a NUL terminator.
    while unsafe { *text.add(n) } != 0 {
        n += 1;
    }
    // SAFETY: `n` units were just read.
    let s = String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(text, n) });
    // SAFETY: the caller promises LocalAlloc.
    unsafe { LocalFree(text.cast()) };
    s
}

fn wide(s: &OsStr) -> Vec<u16> {
    s.encode_wide().chain(std::iter::once(0)).collect()
}
