//! The operating system's say over the camera, the one piece of platform code the app has.
//! On macOS the app must ask for camera access (the system shows its own dialog, once) before
//! opening the camera, and a refusal is told in plain words with where to change it. On
//! Windows, a camera blocked by the privacy settings fails to open with E_ACCESSDENIED; that
//! error is told with where to allow it. Elsewhere (Linux) there is nothing to ask: the camera
//! is a device file the user may or may not read, and nokhwa's own error says which.

/// Asks for camera access where the system wants it asked (macOS), waiting for the answer.
/// `Err` is the message for the window when access is refused.
#[cfg(target_os = "macos")]
pub fn ask() -> Result<(), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    nokhwa::nokhwa_initialize(move |granted| {
        if let Ok(tx) = tx.lock() {
            let _ = tx.send(granted);
        }
    });
    // The dialog waits for the person; the capture thread waits with it.
    match rx.recv() {
        Ok(true) => Ok(()),
        _ => Err(MACOS_DENIED.to_owned()),
    }
}

#[cfg(not(target_os = "macos"))]
pub fn ask() -> Result<(), String> {
    Ok(())
}

#[cfg(any(target_os = "macos", test))]
const MACOS_DENIED: &str = "Strangers may not use the camera. Allow it in System Settings > Privacy & Security > \
                            Camera, then restart Strangers. The stranger sees a test pattern instead.";

const WINDOWS_DENIED: &str = "Windows blocks the camera for this app. Allow it in Settings > Privacy & security > \
                              Camera (\"Let desktop apps access your camera\"), then restart Strangers. The \
                              stranger sees a test pattern instead.";

/// The plain message for a camera that failed to open because the system refused it, if
/// that is why (`error` is nokhwa's error text).
pub fn explain_refusal(error: &str) -> Option<String> {
    if cfg!(windows) {
        windows_refusal(error)
    } else {
        None
    }
}

/// Media Foundation's refusal, E_ACCESSDENIED (0x80070005), as the `windows` crate writes it.
fn windows_refusal(error: &str) -> Option<String> {
    let error = error.to_ascii_lowercase();
    (error.contains("0x80070005") || error.contains("e_accessdenied") || error.contains("access is denied"))
        .then(|| WINDOWS_DENIED.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_privacy_refusal_on_windows_says_where_to_allow_the_camera() {
        let refused = windows_refusal("Could not open device 0: Access is denied. (0x80070005)").unwrap();
        assert!(refused.contains("Settings > Privacy & security > Camera"), "{refused}");
        assert_eq!(windows_refusal("Could not open device 0: No device"), None);
        assert!(MACOS_DENIED.contains("System Settings > Privacy & Security > Camera"));
        assert_eq!(ask(), Ok(()), "nothing to ask on this platform");
    }
}
