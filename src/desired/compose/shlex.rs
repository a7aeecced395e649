//! Splits a command string into words the way compose splits `command: "..."`.
//!
//! `docker stack deploy` splits the string form of `command` and `entrypoint` with a
//! small shell-style lexer, not a shell: no variables, no globbing, no operators. Its
//! rules, reproduced here so a string means the same to mlmodel and to the CLI:
//!
//! - words are separated by space, tab, CR and LF;
//! - `'...'` keeps everything literally;
//! - `"..."` keeps everything, except that a backslash makes the next character literal
//!   (any character, not only `"`, `\\` and `$` as in POSIX shells);
//! - outside quotes a backslash makes the next character literal;
//! - `#` at the start of a word starts a comment that runs to the end of the line
//!   (`a#b` is one word);
//! - `""` and `''` are empty words.

/// Why a command string could not be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// A quote was opened and never closed.
    #[error("unterminated quote")]
    UnterminatedQuote,
    /// The string ends with a backslash that escapes nothing.
    #[error("ends with a backslash that escapes nothing")]
    TrailingEscape,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between words.
    Start,
    /// Inside an unquoted word.
    Word,
    /// After a backslash outside quotes.
    Escape,
    /// Inside double quotes.
    Double,
    /// After a backslash inside double quotes.
    DoubleEscape,
    /// Inside single quotes.
    Single,
    /// Inside a comment.
    Comment,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Splits `input` into words; see the module documentation for the rules.
pub fn split(input: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut state = State::Start;
    for c in input.chars() {
        state = match state {
            State::Start => match c {
                _ if is_space(c) => State::Start,
                '"' => State::Double,
                '\'' => State::Single,
                '\\' => State::Escape,
                '#' => State::Comment,
                _ => {
                    word.push(c);
                    State::Word
                }
            },
            State::Word => match c {
                _ if is_space(c) => {
                    words.push(std::mem::take(&mut word));
                    State::Start
                }
                '"' => State::Double,
                '\'' => State::Single,
                '\\' => State::Escape,
                _ => {
                    word.push(c);
                    State::Word
                }
            },
            State::Escape => {
                word.push(c);
                State::Word
            }
            State::Double => match c {
                '"' => State::Word,
                '\\' => State::DoubleEscape,
                _ => {
                    word.push(c);
                    State::Double
                }
            },
            State::DoubleEscape => {
                word.push(c);
                State::Double
            }
            State::Single => match c {
                '\'' => State::Word,
                _ => {
                    word.push(c);
                    State::Single
                }
            },
            State::Comment => match c {
                '\n' => State::Start,
                _ => State::Comment,
            },
        };
    }
    match state {
        State::Start | State::Comment => {}
        State::Word => words.push(word),
        State::Escape | State::DoubleEscape => return Err(SplitError::TrailingEscape),
        State::Double | State::Single => return Err(SplitError::UnterminatedQuote),
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(input: &str) -> Vec<String> {
        split(input).unwrap()
    }

    #[test]
    fn plain_words_split_on_whitespace() {
        assert_eq!(
            words("  /server  --port\t8080\n-v "),
            ["/server", "--port", "8080", "-v"]
        );
        assert!(words("").is_empty());
        assert!(words(" \t\n").is_empty());
    }

    #[test]
    fn quotes_group_words_and_can_be_empty() {
        assert_eq!(
            words(r#"sh -c "echo hi there""#),
            ["sh", "-c", "echo hi there"]
        );
        assert_eq!(words("echo 'a  b' c"), ["echo", "a  b", "c"]);
        assert_eq!(words(r#"a"b c"d"#), ["ab cd"]);
        assert_eq!(words(r#"x "" ''"#), ["x", "", ""]);
    }

    #[test]
    fn backslashes_escape_any_character() {
        assert_eq!(words(r"a\ b"), ["a b"]);
        assert_eq!(words(r#""a\b\"c""#), [r#"ab"c"#]);
        assert_eq!(words(r"'a\b'"), [r"a\b"]);
    }

    #[test]
    fn comments_start_only_at_the_start_of_a_word() {
        assert_eq!(words("run # the rest"), ["run"]);
        assert_eq!(words("a#b"), ["a#b"]);
        assert_eq!(words("a # c\nb"), ["a", "b"]);
    }

    #[test]
    fn unbalanced_input_is_refused() {
        assert_eq!(split("echo 'oops"), Err(SplitError::UnterminatedQuote));
        assert_eq!(split("echo \"oops"), Err(SplitError::UnterminatedQuote));
        assert_eq!(split("echo oops\\"), Err(SplitError::TrailingEscape));
        assert_eq!(split("\"a\\"), Err(SplitError::TrailingEscape));
    }
}
