"""`densevid report`: a static site (plain HTML, CSS, a little JavaScript, SVG charts) that shows a dataset.

- ``report.data``: what each page lists, read from the tables (pure data, tested against the tables);
- ``report.thumbs``: thumbnails cut with the project's frame decoding, cached by (video, frame);
- ``report.html``: the pages; every value from the data is escaped;
- ``report.build``: writes the site, regenerating only pages whose data changed.
"""
