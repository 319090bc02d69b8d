//! What the OpenAPI document says of a route beside its method, path, statuses and access (those
//! are the [`Route`](super::route::Route)'s): its summary, description, parameters, request body
//! and the answers it describes itself, with the schemas of the types they carry
//! (`utoipa::ToSchema`). [`super::openapi`] builds the document from the route table and these.

use utoipa::openapi::header::Header;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{Content, Ref, RefOr, Required, Response};
use utoipa::ToSchema;

/// Named schemas (components) a route's answers and body refer to.
pub type Schemas = Vec<(String, RefOr<Schema>)>;

/// The document's description of one route.
#[derive(Default)]
pub struct Doc {
    pub summary: &'static str,
    pub description: Option<&'static str>,
    /// Its parameters; a path parameter it does not list is a string.
    pub parameters: Vec<Parameter>,
    pub body: Option<utoipa::openapi::request_body::RequestBody>,
    /// The answers it describes itself; any other status it answers is the API's usual answer
    /// for it ([`super::openapi`]).
    pub answers: Vec<(u16, RefOr<Response>)>,
    pub schemas: Schemas,
    /// OpenAPI `callbacks` (which utoipa 5 does not model), as JSON.
    pub callbacks: Option<serde_json::Value>,
}

/// `T`'s schema as a reference, its components added to `schemas`.
fn reference<T: ToSchema>(schemas: &mut Schemas) -> RefOr<Schema> {
    schemas.push((T::name().into_owned(), T::schema()));
    T::schemas(schemas);
    Ref::from_schema_name(T::name()).into()
}

/// A schema of type `kind`.
pub fn of_type(kind: Type) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(kind)
}

/// `schema` described.
pub fn described(schema: ObjectBuilder, text: &str) -> ObjectBuilder {
    schema.description(Some(text))
}

/// An array of `items`.
pub fn array_of(items: impl Into<RefOr<Schema>>) -> ArrayBuilder {
    ArrayBuilder::new().items(items.into())
}

/// `{"value": [T]}` (a [`super::types::Page`]).
pub fn page(items: RefOr<Schema>) -> ObjectBuilder {
    of_type(Type::Object).property("value", array_of(items))
}

/// A query parameter.
pub fn query(name: &str, schema: ObjectBuilder, description: Option<&str>) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .schema(Some(schema))
        .description(description)
        .build()
}

/// `parameter`, required.
pub fn required(mut parameter: Parameter) -> Parameter {
    parameter.required = Required::True;
    parameter
}

/// A header parameter.
pub fn header(name: &str, schema: ObjectBuilder, description: Option<&str>) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .schema(Some(schema))
        .description(description)
        .build()
}

/// A path parameter (one the path names in braces).
pub fn path(name: &str, schema: impl Into<RefOr<Schema>>) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .schema(Some(schema))
        .build()
}

/// A JSON answer or body of `schema`.
fn json(schema: impl Into<RefOr<Schema>>) -> Content {
    Content::new(Some(schema))
}

/// An integer header (`Retry-After`, `Take`).
pub fn integer_header(description: Option<&str>) -> Header {
    let mut header = Header::new(of_type(Type::Integer));
    header.description = description.map(str::to_owned);
    header
}

impl Doc {
    pub fn new(summary: &'static str) -> Doc {
        Doc {
            summary,
            ..Doc::default()
        }
    }

    pub fn describe(mut self, description: &'static str) -> Doc {
        self.description = Some(description);
        self
    }

    pub fn param(mut self, parameter: Parameter) -> Doc {
        self.parameters.push(parameter);
        self
    }

    /// A JSON body of `T`, `required` or not.
    pub fn body<T: ToSchema>(mut self, required: bool) -> Doc {
        let schema = reference::<T>(&mut self.schemas);
        self.body_schema(schema, required)
    }

    /// A JSON body of `schema` (not a component).
    pub fn body_schema(mut self, schema: impl Into<RefOr<Schema>>, required: bool) -> Doc {
        let required = if required {
            Required::True
        } else {
            Required::False
        };
        self.body = Some(
            RequestBodyBuilder::new()
                .required(Some(required))
                .content("application/json", json(schema))
                .build(),
        );
        self
    }

    /// `status` answered as `response`.
    pub fn answer(mut self, status: u16, response: Response) -> Doc {
        self.answers.push((status, RefOr::T(response)));
        self
    }

    /// `status` answered as the document's shared answer `name` (`#/components/responses/`).
    pub fn shared(mut self, status: u16, name: &str) -> Doc {
        let reference = Ref::new(format!("#/components/responses/{name}"));
        self.answers.push((status, RefOr::Ref(reference)));
        self
    }

    /// Header `name` on the answer to `status` (described before).
    pub fn header(mut self, status: u16, name: &str, header: Header) -> Doc {
        for (answered, response) in &mut self.answers {
            if let (true, RefOr::T(response)) = (*answered == status, response) {
                response.headers.insert(name.to_owned(), header.clone());
            }
        }
        self
    }

    /// `status` answered with `T` as JSON.
    pub fn json<T: ToSchema>(mut self, status: u16, description: &str) -> Doc {
        let schema = reference::<T>(&mut self.schemas);
        self.json_schema(status, description, schema)
    }

    /// `status` answered with JSON of `schema` (not a component).
    pub fn json_schema(
        self,
        status: u16,
        description: &str,
        schema: impl Into<RefOr<Schema>>,
    ) -> Doc {
        let response = Response::builder()
            .description(description)
            .content("application/json", json(schema))
            .build();
        self.answer(status, response)
    }

    /// `status` answered with JSON of `shape` around `T`'s schema (an array of them, say).
    pub fn json_of<T: ToSchema, S: Into<RefOr<Schema>>>(
        mut self,
        status: u16,
        description: &str,
        shape: impl FnOnce(RefOr<Schema>) -> S,
    ) -> Doc {
        let schema = reference::<T>(&mut self.schemas);
        self.json_schema(status, description, shape(schema))
    }

    /// A JSON body of `shape` around `T`'s schema.
    pub fn body_of<T: ToSchema, S: Into<RefOr<Schema>>>(
        mut self,
        required: bool,
        shape: impl FnOnce(RefOr<Schema>) -> S,
    ) -> Doc {
        let schema = reference::<T>(&mut self.schemas);
        self.body_schema(shape(schema), required)
    }

    /// `status` answered with a page of `T` (`{"value": [T]}`).
    pub fn list<T: ToSchema>(mut self, status: u16, description: &str) -> Doc {
        let items = reference::<T>(&mut self.schemas);
        self.json_schema(status, description, page(items))
    }

    /// `status` answered with a page of `T` and, when there is one, the next page's link.
    pub fn paged<T: ToSchema>(mut self, status: u16, description: &str, next: &str) -> Doc {
        let items = reference::<T>(&mut self.schemas);
        let schema = page(items).property("nextLink", described(of_type(Type::String), next));
        self.json_schema(status, description, schema)
    }

    /// `status` answered with text of `content_type`.
    pub fn text(self, status: u16, description: &str, content_type: &str) -> Doc {
        let response = Response::builder()
            .description(description)
            .content(content_type, Content::new(Some(of_type(Type::String))))
            .build();
        self.answer(status, response)
    }

    /// `status` answered without a body.
    pub fn empty(self, status: u16, description: &str) -> Doc {
        self.answer(status, Response::new(description))
    }

    /// 202 with the operation to poll (`Operation-Location`, `Retry-After`).
    pub fn accepted<T: ToSchema>(mut self, description: &str) -> Doc {
        let schema = reference::<T>(&mut self.schemas);
        let response = Response::builder()
            .description(description)
            .header("Operation-Location", Header::new(of_type(Type::String)))
            .header("Retry-After", integer_header(None))
            .content("application/json", json(schema))
            .build();
        self.answer(202, response)
    }

    /// The component `T` and those it refers to, though no answer names it.
    pub fn schema<T: ToSchema>(mut self) -> Doc {
        reference::<T>(&mut self.schemas);
        self
    }

    pub fn callbacks(mut self, callbacks: serde_json::Value) -> Doc {
        self.callbacks = Some(callbacks);
        self
    }
}
