//! Stream ID parsing: SRT's access-control syntax `#!::key=value,...` or a plain string.
//!
//! Standard keys (SRT AccessControl document): `r` resource, `m` mode (`request`, `publish`,
//! `bidirectional`), `u` user, `h` host, `s` session, `t` type. Other keys are kept in `extra`.

/// What a caller asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamId {
    /// The string as received.
    pub raw: String,
    /// True when it used the `#!::` syntax.
    pub structured: bool,
    pub resource: Option<String>,
    pub mode: Option<Mode>,
    pub user: Option<String>,
    pub host: Option<String>,
    pub session: Option<String>,
    pub kind: Option<String>,
    pub extra: Vec<(String, String)>,
}

/// The `m=` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The caller wants to receive (the default).
    Request,
    /// The caller wants to send.
    Publish,
    Bidirectional,
}

/// Why a `#!::` stream ID was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamIdError {
    #[error("stream ID item at byte {offset} has no '=': {item:?}")]
    MissingEquals { offset: usize, item: String },
    #[error("stream ID key {key:?} at byte {offset} appears twice")]
    DuplicateKey { offset: usize, key: String },
    #[error("stream ID mode {value:?} at byte {offset} is not request, publish or bidirectional")]
    BadMode { offset: usize, value: String },
}

const PREFIX: &str = "#!::";

impl StreamId {
    /// Parses a stream ID; strings without the `#!::` prefix are plain names.
    pub fn parse(raw: &str) -> Result<StreamId, StreamIdError> {
        let mut id = StreamId {
            raw: raw.to_owned(),
            ..StreamId::default()
        };
        let Some(body) = raw.strip_prefix(PREFIX) else {
            return Ok(id);
        };
        id.structured = true;
        let mut offset = PREFIX.len();
        for item in body.split(',') {
            let here = offset;
            offset += item.len() + 1;
            if item.is_empty() {
                continue;
            }
            let Some((key, value)) = item.split_once('=') else {
                return Err(StreamIdError::MissingEquals {
                    offset: here,
                    item: item.to_owned(),
                });
            };
            let slot = match key {
                "r" => &mut id.resource,
                "u" => &mut id.user,
                "h" => &mut id.host,
                "s" => &mut id.session,
                "t" => &mut id.kind,
                "m" => {
                    if id.mode.is_some() {
                        return Err(StreamIdError::DuplicateKey {
                            offset: here,
                            key: key.to_owned(),
                        });
                    }
                    id.mode = Some(match value {
                        "request" => Mode::Request,
                        "publish" => Mode::Publish,
                        "bidirectional" => Mode::Bidirectional,
                        _ => {
                            return Err(StreamIdError::BadMode {
                                offset: here + 2,
                                value: value.to_owned(),
                            });
                        }
                    });
                    continue;
                }
                _ => {
                    id.extra.push((key.to_owned(), value.to_owned()));
                    continue;
                }
            };
            if slot.is_some() {
                return Err(StreamIdError::DuplicateKey {
                    offset: here,
                    key: key.to_owned(),
                });
            }
            *slot = Some(value.to_owned());
        }
        Ok(id)
    }

    /// The resource name: `r=` for structured IDs, the whole string for plain ones.
    pub fn resource(&self) -> &str {
        if self.structured {
            self.resource.as_deref().unwrap_or("")
        } else {
            &self.raw
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn access_control_syntax() {
        let id = StreamId::parse("#!::r=live/cam1,m=publish,u=nbc,x=1").unwrap();
        assert!(id.structured);
        assert_eq!(id.resource(), "live/cam1");
        assert_eq!(id.mode, Some(Mode::Publish));
        assert_eq!(id.user.as_deref(), Some("nbc"));
        assert_eq!(id.extra, vec![("x".to_owned(), "1".to_owned())]);
    }

    #[test]
    fn plain_and_errors() {
        assert_eq!(StreamId::parse("cam1").unwrap().resource(), "cam1");
        assert_eq!(
            StreamId::parse("#!::r=a,bad").unwrap_err(),
            StreamIdError::MissingEquals {
                offset: 8,
                item: "bad".into()
            }
        );
        assert!(matches!(
            StreamId::parse("#!::m=pull"),
            Err(StreamIdError::BadMode { offset: 6, .. })
        ));
        assert!(matches!(
            StreamId::parse("#!::u=a,u=b"),
            Err(StreamIdError::DuplicateKey { .. })
        ));
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,80}") {
            let _ = StreamId::parse(&s);
            let _ = StreamId::parse(&format!("#!::{s}"));
        }
    }
}
