//! `#[asyncio::main]` and `#[asyncio::test]`: run an `async fn` the way
//! `asyncio.run(main())` does. Use them through the `asyncio` crate.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{quote, quote_spanned, ToTokens};
use syn::meta::ParseNestedMeta;
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{ItemFn, LitBool, Path, ReturnType, Token};

struct Options {
    debug: Option<bool>,
    loop_factory: Option<Path>,
    virtual_time: bool,
    krate: Path,
}

const DEBUG_EXPECTS: &str = "`debug` expects a boolean literal: `debug = true`";
const LOOP_FACTORY_EXPECTS: &str =
    "`loop_factory` expects a path to a function: `loop_factory = make_loop`";
const CRATE_EXPECTS: &str = "`crate` expects a string literal: `crate = \"path\"`";

/// The stream after `option =`; an option written without `= value`
/// (`#[asyncio::main(debug)]`) or with another shape (`debug(true)`) gets
/// the option's own message, pointing at its name, instead of syn's
/// generic "expected `=`".
fn option_value<'a>(meta: &ParseNestedMeta<'a>, expects: &str) -> syn::Result<ParseStream<'a>> {
    if !meta.input.peek(Token![=]) {
        return Err(meta.error(expects));
    }
    meta.value()
}

/// Parses the value with `parse`, replacing syn's error by `expects`
/// (at the same place).
fn parse_value<T>(
    input: ParseStream<'_>,
    expects: &str,
    parse: impl FnOnce(ParseStream<'_>) -> syn::Result<T>,
) -> syn::Result<T> {
    parse(input).map_err(|e| syn::Error::new(e.span(), expects))
}

fn parse_options(args: TokenStream2) -> syn::Result<Options> {
    let mut options = default_options();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("debug") {
            let input = option_value(&meta, DEBUG_EXPECTS)?;
            let value: LitBool = parse_value(input, DEBUG_EXPECTS, |i| i.parse())?;
            options.debug = Some(value.value);
            Ok(())
        } else if meta.path.is_ident("loop_factory") {
            let input = option_value(&meta, LOOP_FACTORY_EXPECTS)?;
            options.loop_factory = Some(parse_value(input, LOOP_FACTORY_EXPECTS, |i| i.parse())?);
            Ok(())
        } else if meta.path.is_ident("virtual_time") {
            if !meta.input.is_empty() && !meta.input.peek(syn::Token![,]) {
                return Err(
                    meta.error("`virtual_time` takes no value: `#[asyncio::test(virtual_time)]`")
                );
            }
            options.virtual_time = true;
            Ok(())
        } else if meta.path.is_ident("crate") {
            let input = option_value(&meta, CRATE_EXPECTS)?;
            let value: syn::LitStr = parse_value(input, CRATE_EXPECTS, |i| i.parse())?;
            options.krate = value.parse()?;
            Ok(())
        } else {
            let name = meta.path.to_token_stream().to_string().replace(' ', "");
            Err(meta.error(format!(
                "unknown option `{name}`, expected one of: `debug`, `loop_factory`, `virtual_time`, `crate`"
            )))
        }
    });
    parser.parse2(args)?;
    if options.virtual_time && options.loop_factory.is_some() {
        return Err(syn::Error::new(
            proc_macro2::Span::call_site(),
            "`virtual_time` and `loop_factory` cannot be combined",
        ));
    }
    Ok(options)
}

fn default_options() -> Options {
    Options {
        debug: None,
        loop_factory: None,
        virtual_time: false,
        krate: syn::parse_quote!(::asyncio),
    }
}

/// Expands the attribute. On misuse, the error comes with the best
/// expansion possible, so that IDEs keep analysing the body.
fn expand(args: TokenStream2, item: TokenStream2, is_test: bool) -> TokenStream2 {
    let function: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => return with_error(item, e),
    };
    let sig = &function.sig;
    let what = if is_test { "test" } else { "main" };
    if sig.asyncness.is_none() {
        let e = syn::Error::new(
            sig.fn_token.span(),
            "the `async` keyword is missing from the function declaration",
        );
        return with_error(item, e);
    }
    let mut error = None::<syn::Error>;
    let mut push = |e: syn::Error| match &mut error {
        Some(all) => all.combine(e),
        None => error = Some(e),
    };
    if !sig.inputs.is_empty() {
        push(syn::Error::new(
            sig.inputs.span(),
            format!("the {what} function cannot accept arguments"),
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        push(syn::Error::new(
            sig.generics.span(),
            format!("the {what} function cannot have generic parameters"),
        ));
    }
    let options = parse_options(args).unwrap_or_else(|e| {
        push(e);
        default_options()
    });
    let mut tokens = generate(&function, &options, is_test);
    if let Some(e) = error {
        tokens.extend(e.into_compile_error());
    }
    tokens
}

fn generate(function: &ItemFn, options: &Options, is_test: bool) -> TokenStream2 {
    let sig = &function.sig;
    let krate = &options.krate;
    let mut runner = quote!(#krate::Runner::new());
    if let Some(debug) = options.debug {
        runner = quote!(#runner.debug(#debug));
    }
    if let Some(factory) = &options.loop_factory {
        runner = quote!(#runner.loop_factory(#factory));
    }
    if options.virtual_time {
        runner = quote!(#runner.loop_factory(#krate::testing::new_virtual_time_loop));
    }

    let attrs = &function.attrs;
    let vis = &function.vis;
    let ident = &sig.ident;
    let output = &sig.output;
    let body = &function.block;
    let output_type = match output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => quote!(#ty),
    };
    let test_attr = if is_test {
        quote!(#[::core::prelude::v1::test])
    } else {
        quote!()
    };
    let body_span = body.span();
    // Ctrl-C makes `main` die of SIGINT after printing `KeyboardInterrupt`,
    // as Python does; a test panics with it like with any error.
    let interrupted = if is_test {
        quote!()
    } else {
        quote! {
            if let ::core::result::Result::Err(error) = &__asyncio_result {
                if #krate::__private::is_interrupt(error) {
                    #krate::__private::exit_interrupted();
                }
            }
        }
    };
    let run = quote_spanned! {body_span=>
        let __asyncio_body = async move #body;
        let mut __asyncio_runner = #runner;
        let __asyncio_result = __asyncio_runner.run(async move {
            #[allow(unused_imports)]
            use #krate::__private::{ErrorOutput as _, PlainOutput as _};
            let mut __asyncio_slot = ::core::option::Option::Some(
                #krate::__private::Output::<#output_type>(__asyncio_body.await),
            );
            (&mut &mut __asyncio_slot).into_task_result()
        });
        let __asyncio_closed = __asyncio_runner.close();
        #interrupted
        match (__asyncio_result, __asyncio_closed) {
            (::core::result::Result::Ok(value), ::core::result::Result::Ok(())) => value,
            (::core::result::Result::Err(error), _) | (_, ::core::result::Result::Err(error)) => {
                ::core::panic!("{}", error.traceback_line())
            }
        }
    };
    quote! {
        #test_attr
        #(#attrs)*
        #vis fn #ident() #output {
            #run
        }
    }
}

fn with_error(item: TokenStream2, error: syn::Error) -> TokenStream2 {
    // Keep the function so IDEs can still analyse its body.
    let mut tokens = item;
    tokens.extend(error.into_compile_error());
    tokens
}

/// Marks `async fn main` as the program's entry point: it runs on a new
/// event loop like `asyncio.run(main())`, which is then shut down and closed.
///
/// Options: `debug = true` (the loop's debug mode), `loop_factory = path`
/// (a `fn() -> asyncio::Result<EventLoop>` making the loop), `virtual_time`
/// (the loop of `asyncio::testing::new_virtual_time_loop`: `sleep(3600)`
/// returns at once, `loop.time()` advances by exactly what was slept), and
/// `crate = "path"` (where the `asyncio` crate is, if renamed).
///
/// ```ignore
/// #[asyncio::main(debug = true)]
/// async fn main() -> asyncio::Result<()> {
///     asyncio::sleep(0.1).await
/// }
/// ```
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args.into(), item.into(), false).into()
}

/// Marks `async fn` as a test run on its own event loop, like
/// `asyncio.run(test())`. Takes the same options as `#[asyncio::main]`.
///
/// ```ignore
/// #[asyncio::test]
/// async fn sleeps() -> asyncio::Result<()> {
///     asyncio::sleep(0).await
/// }
/// ```
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args.into(), item.into(), true).into()
}
