//! The server's tools, written against rmcp's `ServerHandler` by hand (no macros): the list
//! with JSON Schemas, and a dispatcher for `tools/call`.

use std::{sync::Arc, time::Duration};

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
        JsonObject, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
        ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
    },
    service::RequestContext,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Upper bounds for `slow_steps`, so one call cannot hold a worker for long.
const MAX_STEPS: u32 = 1_000;
const MAX_DELAY_MS: u64 = 60_000;

#[derive(Clone)]
pub struct Hello {
    tools: Arc<[Tool]>,
}

impl Hello {
    pub fn new() -> Self {
        Self {
            tools: tool_list().into(),
        }
    }
}

fn schema(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(object) => Arc::new(object),
        _ => unreachable!("tool schemas are JSON objects"),
    }
}

fn text_schema(description: &str) -> Arc<JsonObject> {
    schema(json!({
        "type": "object",
        "properties": { "text": { "type": "string", "description": description } },
        "required": ["text"],
    }))
}

fn read_only() -> ToolAnnotations {
    ToolAnnotations::new()
        .read_only(true)
        .destructive(false)
        .idempotent(true)
        .open_world(false)
}

fn tool_list() -> Vec<Tool> {
    vec![
        Tool::new("echo", "Echo the text back.", text_schema("Text to echo")).annotate(read_only()),
        Tool::new(
            "upper",
            "Return the text in upper case.",
            text_schema("Text to upper-case"),
        )
        .annotate(read_only()),
        Tool::new(
            "add",
            "Add two numbers and return the sum as text.",
            schema(json!({
                "type": "object",
                "properties": {
                    "a": { "type": "number", "description": "First addend" },
                    "b": { "type": "number", "description": "Second addend" },
                },
                "required": ["a", "b"],
            })),
        )
        .annotate(read_only()),
        Tool::new(
            "delete_note",
            "Delete a note by id (pretend: nothing is stored, but treat it as destructive).",
            schema(json!({
                "type": "object",
                "properties": { "id": { "type": "string", "description": "Note id" } },
                "required": ["id"],
            })),
        )
        .annotate(
            ToolAnnotations::new()
                .read_only(false)
                .destructive(true)
                .idempotent(true)
                .open_world(false),
        ),
        Tool::new(
            "slow_steps",
            "Work in steps, sending one progress notification per step when the request \
             carries a progressToken, then report how many steps ran.",
            schema(json!({
                "type": "object",
                "properties": {
                    "steps": {
                        "type": "integer", "minimum": 0, "maximum": MAX_STEPS, "default": 3,
                        "description": "Number of steps",
                    },
                    "delay_ms": {
                        "type": "integer", "minimum": 0, "maximum": MAX_DELAY_MS, "default": 200,
                        "description": "Milliseconds per step",
                    },
                    "delay": {
                        "type": "number", "minimum": 0,
                        "description": "Seconds per step, instead of delay_ms (the Python test \
                                        peer's spelling); delay_ms wins when both are given",
                    },
                },
            })),
        )
        .annotate(read_only()),
    ]
}

#[derive(Deserialize)]
struct TextArgs {
    text: String,
}

#[derive(Deserialize)]
struct AddArgs {
    a: f64,
    b: f64,
}

#[derive(Deserialize)]
struct DeleteArgs {
    id: String,
}

#[derive(Deserialize)]
struct SlowArgs {
    #[serde(default = "default_steps")]
    steps: u32,
    delay_ms: Option<u64>,
    /// Seconds, as the Python test peer (`tests/peers/py_server.py`) spells it.
    delay: Option<f64>,
}

fn default_steps() -> u32 {
    3
}

const DEFAULT_DELAY_MS: u64 = 200;

impl SlowArgs {
    /// The per-step delay, or `None` if it is negative, not a number or over the limit.
    fn delay(&self) -> Option<Duration> {
        let delay = match (self.delay_ms, self.delay) {
            (Some(ms), _) => Duration::from_millis(ms),
            (None, Some(seconds)) => Duration::try_from_secs_f64(seconds).ok()?,
            (None, None) => Duration::from_millis(DEFAULT_DELAY_MS),
        };
        (delay <= Duration::from_millis(MAX_DELAY_MS)).then_some(delay)
    }
}

/// Arguments that do not fit the schema are a tool error the caller can read, not a
/// protocol error (MCP 2025-11-25 onwards).
fn args<T: DeserializeOwned>(
    tool: &str,
    arguments: Option<JsonObject>,
) -> Result<T, CallToolResult> {
    serde_json::from_value(Value::Object(arguments.unwrap_or_default())).map_err(|error| {
        CallToolResult::error(vec![ContentBlock::text(format!(
            "invalid arguments for {tool}: {error}"
        ))])
    })
}

fn text(value: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(value)])
}

fn format_sum(sum: f64) -> String {
    // `f64` prints whole numbers without a fraction (`5`, not `5.0`).
    format!("{sum}")
}

impl Hello {
    async fn slow_steps(
        &self,
        args: SlowArgs,
        context: &RequestContext<RoleServer>,
    ) -> CallToolResult {
        let delay = match args.delay() {
            Some(delay) if args.steps <= MAX_STEPS => delay,
            _ => {
                return CallToolResult::error(vec![ContentBlock::text(format!(
                    "steps must be at most {MAX_STEPS} and the delay at most {MAX_DELAY_MS} ms"
                ))]);
            }
        };
        let token = context.meta.get_progress_token();
        for step in 1..=args.steps {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = context.ct.cancelled() => {
                    return CallToolResult::error(vec![ContentBlock::text(format!(
                        "cancelled after {} of {} steps", step - 1, args.steps
                    ))]);
                }
            }
            if let Some(token) = &token {
                let param = ProgressNotificationParam::new(token.clone(), f64::from(step))
                    .with_total(f64::from(args.steps))
                    .with_message(format!("step {step} of {}", args.steps));
                if let Err(error) = context.peer.notify_progress(param).await {
                    tracing::debug!("progress notification not delivered: {error}");
                }
            }
        }
        text(format!("completed {} steps", args.steps))
    }
}

impl ServerHandler for Hello {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "hello-mcp-server",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Example server: echo, upper, add, delete_note (destructive) and slow_steps \
                 (progress notifications).",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.to_vec()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|tool| tool.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.as_ref();
        let arguments = request.arguments;
        let result = match name {
            "echo" => args::<TextArgs>(name, arguments).map(|a| text(a.text)),
            "upper" => args::<TextArgs>(name, arguments).map(|a| text(a.text.to_uppercase())),
            "add" => args::<AddArgs>(name, arguments).map(|a| text(format_sum(a.a + a.b))),
            "delete_note" => {
                args::<DeleteArgs>(name, arguments).map(|a| text(format!("deleted {}", a.id)))
            }
            "slow_steps" => match args::<SlowArgs>(name, arguments) {
                Ok(a) => Ok(self.slow_steps(a, &context).await),
                Err(error) => Err(error),
            },
            _ => {
                return Err(ErrorData::invalid_params(
                    format!("unknown tool: {name}"),
                    None,
                ));
            }
        };
        Ok(result.unwrap_or_else(|error| error).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_listed_with_object_schemas() {
        let hello = Hello::new();
        let names: Vec<&str> = hello.tools.iter().map(|tool| tool.name.as_ref()).collect();
        assert_eq!(names, ["echo", "upper", "add", "delete_note", "slow_steps"]);
        for tool in hello.tools.iter() {
            assert_eq!(tool.input_schema.get("type"), Some(&json!("object")));
        }
        let delete = hello.get_tool("delete_note").unwrap();
        assert!(delete.annotations.unwrap().is_destructive());
    }

    #[test]
    fn sums_print_without_trailing_fraction() {
        assert_eq!(format_sum(2.0 + 3.0), "5");
        assert_eq!(format_sum(1.5 + 1.0), "2.5");
    }

    #[test]
    fn slow_steps_defaults() {
        let a: SlowArgs = args("slow_steps", None).unwrap_or_else(|_| panic!("defaults"));
        assert_eq!((a.steps, a.delay()), (3, Some(Duration::from_millis(200))));
        let delay = |value: Value| {
            let Value::Object(object) = value else {
                unreachable!()
            };
            args::<SlowArgs>("slow_steps", Some(object))
                .unwrap_or_else(|_| panic!("parses"))
                .delay()
        };
        assert_eq!(
            delay(json!({"delay": 0.5})),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            delay(json!({"delay": 9, "delay_ms": 10})),
            Some(Duration::from_millis(10))
        );
        assert_eq!(delay(json!({"delay": -1})), None);
        assert_eq!(delay(json!({"delay_ms": 60_001})), None);
        assert!(args::<AddArgs>("add", Some(JsonObject::new())).is_err());
    }
}
