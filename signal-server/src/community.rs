//! The community a server hosts: a name and rules, told to every client in `welcome`. The
//! rules come from a plain text file the operator writes (`--rules-file`); it is read once at
//! start, and a file that cannot serve as rules (unreadable, not UTF-8, too large, blank)
//! stops the server with a clear error rather than being cut or ignored.

use std::path::Path;

use strangers_protocol::limits::{MAX_COMMUNITY_NAME_CHARS, MAX_RULES_BYTES};

/// What `welcome` says about the community (both optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Community {
    pub name: Option<String>,
    pub rules: Option<String>,
}

impl Community {
    /// The community a name and a rules file describe.
    pub fn load(name: Option<&str>, rules_file: Option<&Path>) -> Result<Community, String> {
        let rules = match rules_file {
            None => None,
            Some(path) => {
                let bytes =
                    std::fs::read(path).map_err(|e| format!("cannot read --rules-file {}: {e}", path.display()))?;
                Some(rules_text(bytes).map_err(|problem| format!("--rules-file {}: {problem}", path.display()))?)
            }
        };
        let name = match name.map(str::trim) {
            None | Some("") => None,
            Some(name) if name.chars().count() > MAX_COMMUNITY_NAME_CHARS => {
                return Err(format!("--name is longer than {MAX_COMMUNITY_NAME_CHARS} characters"));
            }
            Some(name) if name.chars().any(char::is_control) => {
                return Err("--name must be one line without control characters".into());
            }
            Some(name) => Some(name.to_owned()),
        };
        Ok(Community { name, rules })
    }
}

/// Checks a rules file's content: UTF-8, not blank, at most [`MAX_RULES_BYTES`] once its
/// surrounding blank lines are trimmed; Windows line ends become plain ones.
fn rules_text(bytes: Vec<u8>) -> Result<String, String> {
    let text = String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_string())?;
    let text = text.replace("\r\n", "\n");
    let text = text.trim_matches(|c: char| c.is_whitespace() && c != ' ' || c == '\u{feff}').trim_end();
    if text.trim().is_empty() {
        return Err("is empty".into());
    }
    if text.len() > MAX_RULES_BYTES {
        return Err(format!("is {} bytes; rules may take at most {MAX_RULES_BYTES}", text.len()));
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err("holds control characters; write plain text".into());
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_plain_text_of_bounded_size() {
        assert_eq!(
            rules_text(b"\xef\xbb\xbf\n\n1. Be kind.\r\n2. No spam.\r\n\n".to_vec()).unwrap(),
            "1. Be kind.\n2. No spam."
        );
        assert_eq!(rules_text(b"  indented\n".to_vec()).unwrap(), "  indented");
        assert!(rules_text(vec![0xff, 0xfe]).unwrap_err().contains("UTF-8"));
        assert!(rules_text(b" \n\t\n".to_vec()).unwrap_err().contains("empty"));
        assert!(rules_text(b"bell\x07".to_vec()).unwrap_err().contains("control"));
        let long = "x".repeat(MAX_RULES_BYTES + 1);
        assert!(rules_text(long.into_bytes()).unwrap_err().contains("at most"));
        assert!(rules_text("x".repeat(MAX_RULES_BYTES).into_bytes()).is_ok());
    }

    #[test]
    fn names_are_one_short_line_and_files_must_exist() {
        assert_eq!(Community::load(Some("  Chess fans "), None).unwrap().name.as_deref(), Some("Chess fans"));
        assert_eq!(Community::load(Some(" "), None).unwrap(), Community::default());
        assert!(Community::load(Some("a\nb"), None).is_err());
        assert!(Community::load(Some(&"n".repeat(MAX_COMMUNITY_NAME_CHARS + 1)), None).is_err());
        let missing = Community::load(None, Some(Path::new("/nonexistent/rules.txt"))).unwrap_err();
        assert!(missing.contains("cannot read --rules-file /nonexistent/rules.txt"), "{missing}");
    }
}
