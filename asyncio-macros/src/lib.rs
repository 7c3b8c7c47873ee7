//! `#[asyncio::main]` and `#[asyncio::test]`: run an `async fn` the way
//! `asyncio.run(main())` does. Use them through the `asyncio` crate.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{quote, quote_spanned, ToTokens};
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{ItemFn, LitBool, Path, ReturnType};

struct Options {
    debug: Option<bool>,
    loop_factory: Option<Path>,
    krate: Path,
}

fn parse_options(args: TokenStream2) -> syn::Result<Options> {
    let mut options = Options {
        debug: None,
        loop_factory: None,
        krate: syn::parse_quote!(::asyncio),
    };
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("debug") {
            let value: LitBool = meta.value()?.parse().map_err(|e| {
                syn::Error::new(e.span(), "`debug` expects a boolean literal: `debug = true`")
            })?;
            options.debug = Some(value.value);
            Ok(())
        } else if meta.path.is_ident("loop_factory") {
            options.loop_factory = Some(meta.value()?.parse()?);
            Ok(())
        } else if meta.path.is_ident("crate") {
            let value: syn::LitStr = meta.value()?.parse()?;
            options.krate = value.parse()?;
            Ok(())
        } else {
            let name = meta.path.to_token_stream().to_string().replace(' ', "");
            Err(meta.error(format!(
                "unknown option `{name}`, expected one of: `debug`, `loop_factory`, `crate`"
            )))
        }
    });
    parser.parse2(args)?;
    Ok(options)
}

fn expand(args: TokenStream2, item: TokenStream2, is_test: bool) -> syn::Result<TokenStream2> {
    let options = parse_options(args)?;
    let function: ItemFn = syn::parse2(item)?;
    let sig = &function.sig;
    let what = if is_test { "test" } else { "main" };
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span(),
            "the `async` keyword is missing from the function declaration",
        ));
    }
    if !sig.inputs.is_empty() {
        return Err(syn::Error::new(
            sig.inputs.span(),
            format!("the {what} function cannot accept arguments"),
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            sig.generics.span(),
            format!("the {what} function cannot have generic parameters"),
        ));
    }

    let krate = &options.krate;
    let mut runner = quote!(#krate::Runner::new());
    if let Some(debug) = options.debug {
        runner = quote!(#runner.debug(#debug));
    }
    if let Some(factory) = &options.loop_factory {
        runner = quote!(#runner.loop_factory(#factory));
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
    let run = quote_spanned! {body_span=>
        let __asyncio_body = async move #body;
        let mut __asyncio_runner = #runner;
        let __asyncio_result = __asyncio_runner.run(async move {
            ::core::result::Result::Ok::<#output_type, #krate::Error>(__asyncio_body.await)
        });
        let __asyncio_closed = __asyncio_runner.close();
        match (__asyncio_result, __asyncio_closed) {
            (::core::result::Result::Ok(value), ::core::result::Result::Ok(())) => value,
            (::core::result::Result::Err(error), _) | (_, ::core::result::Result::Err(error)) => {
                ::core::panic!("{}", error.traceback_line())
            }
        }
    };
    Ok(quote! {
        #test_attr
        #(#attrs)*
        #vis fn #ident() #output {
            #run
        }
    })
}

fn with_error(item: TokenStream2, error: syn::Error) -> TokenStream {
    // Keep the function so IDEs can still analyse its body.
    let mut tokens = item;
    tokens.extend(error.into_compile_error());
    tokens.into()
}

/// Marks `async fn main` as the program's entry point: it runs on a new
/// event loop like `asyncio.run(main())`, which is then shut down and closed.
///
/// Options: `debug = true` (the loop's debug mode), `loop_factory = path`
/// (a `fn() -> asyncio::Result<EventLoop>` making the loop), and
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
    let item2: TokenStream2 = item.into();
    match expand(args.into(), item2.clone(), false) {
        Ok(tokens) => tokens.into(),
        Err(e) => with_error(item2, e),
    }
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
    let item2: TokenStream2 = item.into();
    match expand(args.into(), item2.clone(), true) {
        Ok(tokens) => tokens.into(),
        Err(e) => with_error(item2, e),
    }
}
