//! Reflows the schema descriptions of the generated CRDs into paragraphs.
//!
//! schemars copies a doc comment into `description` with the source's line breaks, which
//! are wrapped at 100 columns for the editor, not for the reader: `kubectl explain` then
//! breaks lines mid-sentence ("pinning an / older release"). `crds()` passes every CRD
//! through [`reflow_crd`], which joins the lines of each paragraph with a space and keeps
//! what Markdown gives meaning to a line break: blank lines between paragraphs, list items
//! and code blocks (fenced, or indented after a blank line).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
    JSONSchemaPropsOrStringArray,
};

/// Reflows every `description` in every version's schema of `crd`.
pub fn reflow_crd(crd: &mut CustomResourceDefinition) {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            reflow_schema(schema);
        }
    }
}

/// Reflows the description of `schema` and of every schema nested in it, through each
/// keyword of JSONSchemaProps that can hold one.
fn reflow_schema(schema: &mut JSONSchemaProps) {
    if let Some(description) = schema.description.as_mut() {
        *description = reflow(description);
    }
    let maps = [
        schema.properties.as_mut(),
        schema.pattern_properties.as_mut(),
        schema.definitions.as_mut(),
    ];
    for nested in maps.into_iter().flatten().flat_map(|m| m.values_mut()) {
        reflow_schema(nested);
    }
    let lists = [
        schema.all_of.as_mut(),
        schema.any_of.as_mut(),
        schema.one_of.as_mut(),
    ];
    for nested in lists.into_iter().flatten().flatten() {
        reflow_schema(nested);
    }
    if let Some(not) = schema.not.as_mut() {
        reflow_schema(not);
    }
    match schema.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(item)) => reflow_schema(item),
        Some(JSONSchemaPropsOrArray::Schemas(items)) => items.iter_mut().for_each(reflow_schema),
        None => {}
    }
    for or_bool in [
        schema.additional_properties.as_mut(),
        schema.additional_items.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        if let JSONSchemaPropsOrBool::Schema(nested) = or_bool {
            reflow_schema(nested);
        }
    }
    for dependency in schema.dependencies.iter_mut().flat_map(|d| d.values_mut()) {
        if let JSONSchemaPropsOrStringArray::Schema(nested) = dependency {
            reflow_schema(nested);
        }
    }
}

/// What the last line written was, which decides whether the next line may join it.
#[derive(Clone, Copy, PartialEq)]
enum Last {
    /// Nothing yet, or a blank line: the next line starts a block.
    Break,
    /// Prose or a list item: a following plain line continues it.
    Text,
    /// A line of a code block: kept as it is.
    Code,
}

/// Joins the lines of each paragraph (and each list item) of `text` with single spaces.
///
/// Kept as they are: blank lines, lines starting a list item (`- `, `* `, `+ `, `1.`,
/// `1)`), fenced code blocks (between lines starting with three backticks) and indented
/// code blocks (a tab or four spaces, after a blank line). Leading and trailing blank lines
/// are dropped.
pub fn reflow(text: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut last = Last::Break;
    let mut in_fence = false;
    for line in text.lines() {
        let trimmed = line.trim();
        let fence = trimmed.starts_with("```");
        if in_fence || fence {
            // A line that opens and closes a fence (```x```) leaves the state alone.
            if fence && !(trimmed.len() > 3 && trimmed.ends_with("```")) {
                in_fence = !in_fence;
            }
            out.push(line.trim_end().to_owned());
            last = Last::Code;
        } else if trimmed.is_empty() {
            if last != Last::Break {
                out.push(String::new());
            }
            last = Last::Break;
        } else if (last != Last::Text) && is_indented_code(line) {
            out.push(line.trim_end().to_owned());
            last = Last::Code;
        } else if last == Last::Text && !is_list_item(trimmed) {
            if let Some(previous) = out.last_mut() {
                previous.push(' ');
                previous.push_str(trimmed);
            }
        } else {
            // A new paragraph, a list item, or prose right after a code line.
            out.push(if is_list_item(trimmed) {
                line.trim_end().to_owned()
            } else {
                trimmed.to_owned()
            });
            last = Last::Text;
        }
    }
    while out.last().is_some_and(String::is_empty) {
        out.pop();
    }
    out.join("\n")
}

fn is_indented_code(line: &str) -> bool {
    line.starts_with('\t') || line.starts_with("    ")
}

/// `- x`, `* x`, `+ x`, `1. x`, `12) x`.
fn is_list_item(trimmed: &str) -> bool {
    if ["- ", "* ", "+ "].iter().any(|m| trimmed.starts_with(m)) {
        return true;
    }
    let digits = trimmed.chars().take_while(char::is_ascii_digit).count();
    digits > 0
        && [". ", ") "]
            .iter()
            .any(|m| trimmed[digits..].starts_with(m))
}

#[cfg(test)]
mod tests {
    use super::reflow;

    #[test]
    fn reflow_cases() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "a wrapped sentence becomes one line",
                "Pinning the candidate approves it; pinning an\nolder release rolls back.",
                "Pinning the candidate approves it; pinning an older release rolls back.",
            ),
            (
                "paragraph breaks stay",
                "First line\ncontinued.\n\nSecond paragraph\ncontinued.",
                "First line continued.\n\nSecond paragraph continued.",
            ),
            (
                "list items stay on lines of their own, their continuations join them",
                "Kinds:\n- one\n  still one\n* two\n1. three\n12) four",
                "Kinds:\n- one still one\n* two\n1. three\n12) four",
            ),
            (
                "a fenced code block is kept as it is",
                "Example:\n\n```yaml\nspec:\n  pin: x\n```\nAfter\nthe block.",
                "Example:\n\n```yaml\nspec:\n  pin: x\n```\nAfter the block.",
            ),
            (
                "an indented code block after a blank line is kept",
                "Run:\n\n    ferry crds\n    --out-dir x\n\nDone.",
                "Run:\n\n    ferry crds\n    --out-dir x\n\nDone.",
            ),
            (
                "an indented continuation of prose is joined, not taken for code",
                "A long\n    indented continuation.",
                "A long indented continuation.",
            ),
            (
                "a number inside a sentence is not a list item",
                "Keeps the last\n10 builds.",
                "Keeps the last 10 builds.",
            ),
            (
                "blank lines at either end and repeated blank lines collapse",
                "\nOne.\n\n\n\nTwo.\n\n",
                "One.\n\nTwo.",
            ),
            (
                "text without line breaks is unchanged",
                "One line.",
                "One line.",
            ),
        ];
        for (name, input, want) in cases {
            assert_eq!(reflow(input), *want, "case: {name}");
        }
    }
}
