// Passkeys (WebAuthn) for the login page and My account > Passkeys. The server makes the options and checks the
// answer (ASP.NET Core Identity); this file only carries them between the server and navigator.credentials.
(() => {
  "use strict";
  if (!window.PublicKeyCredential || !navigator.credentials) {
    return; // No WebAuthn: the passkey buttons stay hidden.
  }

  const toBytes = (base64url) => {
    const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(base64url.length / 4) * 4, "=");
    return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)).buffer;
  };
  const toBase64Url = (buffer) => btoa(String.fromCharCode(...new Uint8Array(buffer)))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

  const creationOptions = (json) => PublicKeyCredential.parseCreationOptionsFromJSON
    ? PublicKeyCredential.parseCreationOptionsFromJSON(json)
    : { ...json, challenge: toBytes(json.challenge), user: { ...json.user, id: toBytes(json.user.id) },
        excludeCredentials: (json.excludeCredentials || []).map((c) => ({ ...c, id: toBytes(c.id) })) };
  const requestOptions = (json) => PublicKeyCredential.parseRequestOptionsFromJSON
    ? PublicKeyCredential.parseRequestOptionsFromJSON(json)
    : { ...json, challenge: toBytes(json.challenge),
        allowCredentials: (json.allowCredentials || []).map((c) => ({ ...c, id: toBytes(c.id) })) };

  const credentialJson = (credential) => {
    if (typeof credential.toJSON === "function") {
      return JSON.stringify(credential.toJSON());
    }
    const response = {};
    for (const name of ["clientDataJSON", "attestationObject", "authenticatorData", "signature", "userHandle"]) {
      if (credential.response[name]) {
        response[name] = toBase64Url(credential.response[name]);
      }
    }
    if (typeof credential.response.getTransports === "function") {
      response.transports = credential.response.getTransports();
    }
    return JSON.stringify({ id: credential.id, rawId: toBase64Url(credential.rawId), type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment, response,
      clientExtensionResults: credential.getClientExtensionResults() });
  };

  // The options come from a POST with the form's antiforgery token, as any other form post.
  const fetchOptions = async (form) => {
    const token = form.querySelector("input[name=__RequestVerificationToken]").value;
    const response = await fetch(form.dataset.optionsUrl, {
      method: "POST", credentials: "same-origin", headers: { "RequestVerificationToken": token },
    });
    if (!response.ok) {
      throw new Error(`The server answered ${response.status}.`);
    }
    return response.json();
  };

  const run = (formId, buttonId, errorId, ceremony) => {
    const form = document.getElementById(formId);
    if (!form) {
      return;
    }
    const button = document.getElementById(buttonId);
    const error = document.getElementById(errorId);
    form.hidden = false;
    button.hidden = false;
    button.addEventListener("click", async () => {
      error.hidden = true;
      button.disabled = true;
      try {
        const credential = await ceremony(await fetchOptions(form));
        form.querySelector("input[type=hidden][name$=Credential]").value = credentialJson(credential);
        form.submit();
      } catch (e) {
        error.textContent = e && e.name === "NotAllowedError" ? "The passkey request was cancelled or timed out." : `That did not work: ${e.message}`;
        error.hidden = false;
        button.disabled = false;
      }
    });
  };

  run("passkey-login", "passkey-login-button", "passkey-login-error",
    (options) => navigator.credentials.get({ publicKey: requestOptions(options) }));
  run("passkey-add", "passkey-add-button", "passkey-add-error",
    (options) => navigator.credentials.create({ publicKey: creationOptions(options) }));
})();
