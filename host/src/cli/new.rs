//! `warden plugin new NAME --lang rust|python|js [--dir D]`: writes a plugin project that builds
//! as it is, with one example tool, the contract's WIT, and a README with the command that
//! builds it.
//!
//! Every project has the same `wit/`: `world.wit`, the plugin's own world (the `tool` export and
//! only the imports it uses), and `deps/warden-plugin/`, the contract exactly as this binary
//! serves it. The Rust project uses wit-bindgen from crates.io directly rather than Warden's SDK,
//! which is not published, so it builds on any machine that reaches crates.io.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use super::print_stdout;
use crate::error::{CallError, ErrorKind};
use crate::plugins::CONTRACT_VERSION;

/// The componentize-py release the Python template and Warden's tests build with.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// The `@bytecodealliance/componentize-js` release the JS template and Warden's tests build with.
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// The contract as this binary serves it, written into `wit/deps/warden-plugin/`.
const CONTRACT_FILES: &[(&str, &str)] = &[
    ("world.wit", include_str!("../../../wit/world.wit")),
    ("types.wit", include_str!("../../../wit/types.wit")),
    ("tool.wit", include_str!("../../../wit/tool.wit")),
    ("log.wit", include_str!("../../../wit/log.wit")),
    ("memory.wit", include_str!("../../../wit/memory.wit")),
    ("data.wit", include_str!("../../../wit/data.wit")),
    ("model.wit", include_str!("../../../wit/model.wit")),
];

/// Files every project gets, whatever its language.
const COMMON_TEMPLATES: &[(&str, &str)] = &[
    (
        "wit/world.wit",
        include_str!("../../templates/common/world.wit.tmpl"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/common/gitignore.tmpl"),
    ),
];

const RUST_TEMPLATES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/rust/Cargo.toml.tmpl"),
    ),
    (
        ".cargo/config.toml",
        include_str!("../../templates/rust/.cargo/config.toml.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/rust/src/lib.rs.tmpl"),
    ),
    (
        "README.md",
        include_str!("../../templates/rust/README.md.tmpl"),
    ),
];

const PYTHON_TEMPLATES: &[(&str, &str)] = &[
    ("app.py", include_str!("../../templates/python/app.py.tmpl")),
    (
        "warden_tools.py",
        include_str!("../../templates/python/warden_tools.py.tmpl"),
    ),
    (
        "README.md",
        include_str!("../../templates/python/README.md.tmpl"),
    ),
];

const JS_TEMPLATES: &[(&str, &str)] = &[
    ("app.js", include_str!("../../templates/js/app.js.tmpl")),
    (
        "warden-tools.js",
        include_str!("../../templates/js/warden-tools.js.tmpl"),
    ),
    (
        "package.json",
        include_str!("../../templates/js/package.json.tmpl"),
    ),
    (
        "README.md",
        include_str!("../../templates/js/README.md.tmpl"),
    ),
];

/// Words WIT reserves; a world cannot be named after one.
const WIT_KEYWORDS: &[&str] = &[
    "as",
    "async",
    "bool",
    "borrow",
    "char",
    "constructor",
    "enum",
    "export",
    "f32",
    "f64",
    "flags",
    "from",
    "func",
    "future",
    "import",
    "include",
    "interface",
    "list",
    "option",
    "own",
    "package",
    "record",
    "resource",
    "result",
    "s16",
    "s32",
    "s64",
    "s8",
    "static",
    "stream",
    "string",
    "tuple",
    "type",
    "u16",
    "u32",
    "u64",
    "u8",
    "use",
    "variant",
    "with",
    "world",
];

/// The language of a new plugin project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Lang {
    /// Rust, built for wasm32-wasip2 with cargo and wit-bindgen.
    Rust,
    /// Python, built with componentize-py.
    Python,
    /// JavaScript, built with componentize-js.
    Js,
}

impl Lang {
    fn templates(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Lang::Rust => RUST_TEMPLATES,
            Lang::Python => PYTHON_TEMPLATES,
            Lang::Js => JS_TEMPLATES,
        }
    }

    /// The command, run in the project folder, that builds the component.
    fn build_command(self, name: &str) -> String {
        match self {
            Lang::Rust => "cargo build --release".into(),
            Lang::Python => {
                format!("componentize-py -d wit -w {name} componentize app -o {name}.wasm")
            }
            Lang::Js => "npm install && npm run build".into(),
        }
    }

    /// Where the build puts the component, relative to the project folder.
    fn component_path(self, name: &str) -> String {
        match self {
            Lang::Rust => format!(
                "target/wasm32-wasip2/release/{}.wasm",
                name.replace('-', "_")
            ),
            Lang::Python | Lang::Js => format!("{name}.wasm"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        }
    }
}

/// Arguments of `warden plugin new`.
#[derive(Debug, Args)]
pub(super) struct NewArgs {
    /// The plugin's name: lowercase words of letters and digits joined by `-`, e.g. `ticket-tools`.
    name: String,
    /// The language to write the plugin in.
    #[arg(long, value_enum)]
    lang: Lang,
    /// The folder to create (default: ./NAME). It must not exist yet, or be empty.
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub(super) fn run(args: NewArgs) -> Result<(), CallError> {
    check_name(&args.name)?;
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    check_dir_is_free(&dir)?;
    for (path, text) in project_files(&args.name, args.lang) {
        write_file(&dir.join(path), &text)?;
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "created the {} plugin `{}` in {}\n",
        args.lang.label(),
        args.name,
        dir.display()
    );
    let _ = writeln!(out, "build it:\n  cd {}", dir.display());
    if args.lang == Lang::Rust {
        let _ = writeln!(
            out,
            "  rustup target add wasm32-wasip2   # once per machine"
        );
    }
    if args.lang == Lang::Python {
        let _ = writeln!(
            out,
            "  pip install componentize-py=={COMPONENTIZE_PY_VERSION}   # once per machine"
        );
    }
    let _ = writeln!(out, "  {}\n", args.lang.build_command(&args.name));
    let component = args.lang.component_path(&args.name);
    let _ = writeln!(out, "then try it:\n  warden plugin inspect {component}");
    let _ = write!(
        out,
        "  warden call {component} greet --input '{{\"name\":\"Ada\"}}'"
    );
    print_stdout(&out)
}

/// Every file of a new project, by path relative to the project folder, with its text.
fn project_files(name: &str, lang: Lang) -> Vec<(String, String)> {
    let contract = CONTRACT_FILES
        .iter()
        .map(|(file, text)| (format!("wit/deps/warden-plugin/{file}"), text.to_string()));
    let templates = COMMON_TEMPLATES
        .iter()
        .chain(lang.templates())
        .map(|(path, text)| (path.to_string(), render(text, name)));
    contract.chain(templates).collect()
}

/// Fills a template's `{{placeholders}}`.
fn render(template: &str, name: &str) -> String {
    let text = template
        .replace("{{name}}", name)
        .replace("{{name_snake}}", &name.replace('-', "_"))
        .replace("{{contract}}", CONTRACT_VERSION)
        .replace("{{componentize_py}}", COMPONENTIZE_PY_VERSION)
        .replace("{{componentize_js}}", COMPONENTIZE_JS_VERSION);
    debug_assert!(!text.contains("{{"), "a placeholder was left: {text}");
    text
}

/// A name that is at once a WIT world name, a cargo package name and an npm package name.
fn check_name(name: &str) -> Result<(), CallError> {
    let words_ok = !name.is_empty()
        && name.len() <= 64
        && name.split('-').all(|word| {
            word.starts_with(|c: char| c.is_ascii_lowercase())
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    if !words_ok {
        return Err(CallError::invalid_input(format!(
            "`{name}` cannot name a plugin: use lowercase words of letters and digits, each \
             starting with a letter, joined by `-` (e.g. `ticket-tools`), at most 64 characters"
        )));
    }
    if WIT_KEYWORDS.contains(&name) {
        return Err(CallError::invalid_input(format!(
            "`{name}` cannot name a plugin: it is a WIT keyword; try `{name}-tools`"
        )));
    }
    Ok(())
}

fn check_dir_is_free(dir: &Path) -> Result<(), CallError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(CallError::invalid_input(format!(
                    "`{}` already exists and is not empty; choose another folder with --dir",
                    dir.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            Err(CallError::invalid_input(format!(
                "`{}` is a file; choose another folder with --dir",
                dir.display()
            )))
        }
        Err(e) => Err(CallError::new(
            ErrorKind::Internal,
            format!("cannot read `{}`: {e}", dir.display()),
        )),
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), CallError> {
    let io_error = |e: std::io::Error| {
        CallError::new(
            ErrorKind::Internal,
            format!("cannot write `{}`: {e}", path.display()),
        )
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_error)?;
    }
    std::fs::write(path, text).map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kebab_case_names() {
        for name in ["greeter", "ticket-tools", "tools2", "a-b2-c"] {
            assert!(check_name(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn refuses_names_that_wit_cannot_use() {
        for name in [
            "",
            "Tools",
            "2tools",
            "my_tools",
            "my--tools",
            "-x",
            "x-",
            "my-2x",
            "world",
        ] {
            let err = check_name(name).expect_err(name);
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{name}");
        }
    }

    #[test]
    fn every_placeholder_is_filled_in_every_language() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            for (path, text) in project_files("ticket-tools", lang) {
                assert!(!text.contains("{{"), "{lang:?} {path}");
            }
        }
    }

    #[test]
    fn the_contract_is_written_as_this_host_serves_it() {
        let files = project_files("x", Lang::Python);
        let world = files
            .iter()
            .find(|(path, _)| path == "wit/deps/warden-plugin/world.wit")
            .expect("the contract's world.wit");
        assert!(
            world
                .1
                .contains(&format!("package warden:plugin@{CONTRACT_VERSION};")),
            "{}",
            world.1
        );
        let own = files.iter().find(|(path, _)| path == "wit/world.wit");
        let own = own.expect("the plugin's world");
        assert!(
            own.1
                .contains(&format!("export warden:plugin/tool@{CONTRACT_VERSION};"))
        );
    }
}
