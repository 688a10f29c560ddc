//! The name of the machine this process runs on.

/// The host name as the kernel has it (`gethostname`), or `$HOSTNAME` when
/// that fails; `None` when neither gives a name.
pub fn name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it or truncates.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let kernel = (rc == 0).then(|| {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).trim().to_string()
    });
    kernel
        .filter(|n| !n.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|n| !n.is_empty()))
}

/// The host name up to its first dot, as a machine names itself in an
/// inventory.
pub fn short_name() -> Option<String> {
    let name = name()?;
    let short = name.split('.').next().unwrap_or_default();
    (!short.is_empty()).then(|| short.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_short_name_is_the_first_label_of_the_name() {
        let name = super::name().expect("this machine has a host name");
        let short = super::short_name().expect("and a short one");
        assert!(name.starts_with(&short));
        assert!(!short.contains('.'));
    }
}
