//! `warden plugin new NAME --lang rust|python|js [--dir D]`: writes a plugin project that builds
//! as it is, with one example tool and a README with the command that builds it.
//!
//! A Python or JS project gets `wit/`: `world.wit`, the plugin's own world (the `tool` export and
//! only the imports it uses), and `deps/warden-plugin/`, the contract exactly as this binary
//! serves it; its toolchain builds from that world. A Rust project has no `wit/`: it depends on
//! the SDK (`warden-sdk`), which carries the contract and whose bindings import only the host
//! interfaces the code calls. The dependency is by path when the project is made inside a Warden
//! checkout, by git otherwise ([`DEFAULT_SDK_GIT`], `--sdk-git`, `WARDEN_SDK_GIT`), or by
//! `--sdk-path`.

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

/// Where a Rust project made outside a Warden checkout gets the SDK from: the `repository` of
/// the `warden-sdk` package (plugins/sdk/Cargo.toml).
pub const DEFAULT_SDK_GIT: &str = "https://github.com/warden-dev/warden";

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
const COMMON_TEMPLATES: &[(&str, &str)] = &[(
    ".gitignore",
    include_str!("../../templates/common/gitignore.tmpl"),
)];

/// The plugin's own world, for the languages whose toolchain builds from `wit/` (not Rust).
const WORLD_TEMPLATE: (&str, &str) = (
    "wit/world.wit",
    include_str!("../../templates/common/world.wit.tmpl"),
);

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
    /// Rust, built for wasm32-wasip2 with cargo and Warden's SDK (`warden-sdk`).
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

    /// Whether the project carries `wit/` (the plugin's world and the contract).
    fn has_wit(self) -> bool {
        self != Lang::Rust
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
    /// Rust: depend on the SDK from this git repository (default: by path when the folder is
    /// inside a Warden checkout, else the Warden repository).
    #[arg(
        long,
        value_name = "URL",
        env = "WARDEN_SDK_GIT",
        conflicts_with = "sdk_path"
    )]
    sdk_git: Option<String>,
    /// Rust: depend on the SDK at this folder (plugins/sdk of a Warden checkout, or the checkout).
    #[arg(long, value_name = "DIR")]
    sdk_path: Option<PathBuf>,
}

/// Where a Rust project gets `warden-sdk` from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SdkSource {
    /// A folder, as written into Cargo.toml (relative to the project, or absolute).
    Path(String),
    /// A git repository URL.
    Git(String),
}

impl SdkSource {
    /// The dependency line of the project's Cargo.toml.
    fn dependency(&self) -> String {
        match self {
            SdkSource::Path(path) => format!("warden-sdk = {{ path = \"{}\" }}", toml_escape(path)),
            SdkSource::Git(url) => format!("warden-sdk = {{ git = \"{}\" }}", toml_escape(url)),
        }
    }

    /// How the README explains the choice.
    fn explained(&self) -> String {
        match self {
            SdkSource::Path(path) => format!(
                "by path, from `{path}`: the project was made inside a Warden checkout (or with \
                 `--sdk-path`), so it builds with that checkout's SDK"
            ),
            SdkSource::Git(url) => format!(
                "by git, from `{url}` (the default branch; `--sdk-git URL` or `WARDEN_SDK_GIT` \
                 choose another repository, `--sdk-path DIR` a local SDK)"
            ),
        }
    }
}

/// Escapes `text` for a TOML basic string.
fn toml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// Whether `dir` holds the SDK: a Cargo.toml whose package is `warden-sdk`.
fn is_sdk_dir(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|manifest| {
        manifest
            .lines()
            .any(|line| line.trim().replace(' ', "") == "name=\"warden-sdk\"")
    })
}

/// `path` made absolute (against the current folder) and without `.` or `..` parts, so that
/// walking up its ancestors walks up the folders it names.
fn absolute(path: &Path) -> Result<PathBuf, CallError> {
    let joined = std::path::absolute(path).map_err(|e| {
        CallError::new(
            ErrorKind::Internal,
            format!("cannot resolve `{}`: {e}", path.display()),
        )
    })?;
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// The SDK dependency of a Rust project made in `dir`: `--sdk-path`, `--sdk-git` (or
/// `WARDEN_SDK_GIT`), the checkout `dir` is inside, or [`DEFAULT_SDK_GIT`], in that order.
fn sdk_source(
    dir: &Path,
    sdk_git: Option<&str>,
    sdk_path: Option<&Path>,
) -> Result<SdkSource, CallError> {
    if let Some(given) = sdk_path {
        let given = absolute(given)?;
        let sdk = [given.clone(), given.join("plugins/sdk")]
            .into_iter()
            .find(|candidate| is_sdk_dir(candidate))
            .ok_or_else(|| {
                CallError::invalid_input(format!(
                    "`{}` is not Warden's Rust SDK: it has no Cargo.toml naming `warden-sdk` \
                     (nor plugins/sdk/Cargo.toml); give the SDK folder or a Warden checkout",
                    given.display()
                ))
            })?;
        return Ok(SdkSource::Path(sdk.display().to_string()));
    }
    if let Some(url) = sdk_git {
        let url = url.trim();
        if url.is_empty() || url.chars().any(char::is_control) {
            return Err(CallError::invalid_input(
                "--sdk-git (or WARDEN_SDK_GIT) must be a git URL, e.g. \
                 https://github.com/warden-dev/warden or file:///path/to/repo",
            ));
        }
        return Ok(SdkSource::Git(url.to_string()));
    }
    let dir = absolute(dir)?;
    // The project folder itself is never the checkout: it is empty or about to be made.
    for (depth, ancestor) in dir.ancestors().enumerate().skip(1) {
        if is_sdk_dir(&ancestor.join("plugins/sdk")) {
            let up = "../".repeat(depth);
            return Ok(SdkSource::Path(format!("{up}plugins/sdk")));
        }
    }
    Ok(SdkSource::Git(DEFAULT_SDK_GIT.to_string()))
}

pub(super) fn run(args: NewArgs) -> Result<(), CallError> {
    check_name(&args.name)?;
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    check_dir_is_free(&dir)?;
    let sdk = match args.lang {
        Lang::Rust => Some(sdk_source(
            &dir,
            args.sdk_git.as_deref(),
            args.sdk_path.as_deref(),
        )?),
        Lang::Python | Lang::Js => None,
    };
    for (path, text) in project_files(&args.name, args.lang, sdk.as_ref()) {
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
    if let Some(sdk) = &sdk {
        let _ = writeln!(out, "it depends on the SDK {}\n", sdk.explained());
    }
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

/// Every file of a new project, by path relative to the project folder, with its text. `sdk` is
/// where a Rust project gets the SDK from (`None` for the other languages).
fn project_files(name: &str, lang: Lang, sdk: Option<&SdkSource>) -> Vec<(String, String)> {
    let wit = lang.has_wit();
    let contract = CONTRACT_FILES
        .iter()
        .filter(|_| wit)
        .map(|(file, text)| (format!("wit/deps/warden-plugin/{file}"), text.to_string()));
    let world = std::iter::once(&WORLD_TEMPLATE).filter(|_| wit);
    let (dependency, explained) = sdk.map_or((String::new(), String::new()), |sdk| {
        (sdk.dependency(), sdk.explained())
    });
    let templates = world
        .chain(COMMON_TEMPLATES)
        .chain(lang.templates())
        .map(|(path, text)| {
            let text = text
                .replace("{{sdk_dependency}}", &dependency)
                .replace("{{sdk_explained}}", &explained);
            (path.to_string(), render(&text, name))
        });
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
        let git = SdkSource::Git(DEFAULT_SDK_GIT.into());
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let sdk = (lang == Lang::Rust).then_some(&git);
            for (path, text) in project_files("ticket-tools", lang, sdk) {
                assert!(!text.contains("{{"), "{lang:?} {path}");
            }
        }
    }

    /// The repository root: host/ sits in it.
    fn checkout() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("host/ sits in the checkout")
            .to_path_buf()
    }

    #[test]
    fn a_rust_project_depends_on_the_sdk_and_has_no_wit() {
        let sdk = SdkSource::Path("../plugins/sdk".into());
        let files = project_files("ticket-tools", Lang::Rust, Some(&sdk));
        assert!(files.iter().all(|(path, _)| !path.starts_with("wit/")));
        let manifest = &files
            .iter()
            .find(|(path, _)| path == "Cargo.toml")
            .unwrap()
            .1;
        assert!(
            manifest.contains("warden-sdk = { path = \"../plugins/sdk\" }"),
            "{manifest}"
        );
        assert!(!manifest.contains("wit-bindgen"), "{manifest}");
        let lib = &files
            .iter()
            .find(|(path, _)| path == "src/lib.rs")
            .unwrap()
            .1;
        assert!(lib.contains("use warden_sdk::prelude::*;"), "{lib}");
        assert!(!lib.contains("wit_bindgen"), "{lib}");
        let readme = &files
            .iter()
            .find(|(path, _)| path == "README.md")
            .unwrap()
            .1;
        assert!(
            readme.contains("by path, from `../plugins/sdk`"),
            "{readme}"
        );
    }

    #[test]
    fn inside_a_checkout_the_sdk_is_found_by_path_relative_to_the_project() {
        let dir = checkout().join("target/some/where/./new-tool");
        let sdk = sdk_source(&dir, None, None).unwrap();
        assert_eq!(sdk, SdkSource::Path("../../../../plugins/sdk".into()));
        let git = sdk_source(&dir, Some("file:///srv/warden"), None).unwrap();
        assert_eq!(git, SdkSource::Git("file:///srv/warden".into()));
    }

    #[test]
    fn outside_a_checkout_the_sdk_comes_from_the_default_git() {
        let outside = std::env::temp_dir().join("warden-new-test/x");
        assert_eq!(
            sdk_source(&outside, None, None).unwrap(),
            SdkSource::Git(DEFAULT_SDK_GIT.into())
        );
        assert_eq!(
            SdkSource::Git(DEFAULT_SDK_GIT.into()).dependency(),
            format!("warden-sdk = {{ git = \"{DEFAULT_SDK_GIT}\" }}")
        );
    }

    #[test]
    fn sdk_path_takes_the_sdk_or_a_checkout_and_refuses_anything_else() {
        let sdk_dir = checkout().join("plugins/sdk");
        let expected = SdkSource::Path(absolute(&sdk_dir).unwrap().display().to_string());
        let outside = std::env::temp_dir().join("x");
        assert_eq!(
            sdk_source(&outside, None, Some(&sdk_dir)).unwrap(),
            expected
        );
        assert_eq!(
            sdk_source(&outside, None, Some(&checkout())).unwrap(),
            expected
        );
        let err = sdk_source(&outside, None, Some(&checkout().join("host"))).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("not Warden's Rust SDK"), "{err}");
        let err = sdk_source(&outside, Some("a\nb"), None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn dependency_lines_escape_toml() {
        let sdk = SdkSource::Path(r#"C:\w "x"\sdk"#.into());
        assert_eq!(
            sdk.dependency(),
            r#"warden-sdk = { path = "C:\\w \"x\"\\sdk" }"#
        );
    }

    #[test]
    fn the_contract_is_written_as_this_host_serves_it() {
        let files = project_files("x", Lang::Python, None);
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
